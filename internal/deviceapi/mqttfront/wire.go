package mqttfront

import "time"

// Wire values of the DPS device API over MQTT. References:
//   - spec/dps-protocol.md §4.1: CONNECT (client id, username, password);
//   - §4.2: topics; §4.3: response topic formatting (hard requirements);
//   - §4.4: QoS, acks, sessions; §4.7 and §1.1: MQTT over WebSocket;
//   - §9: the 96 KB message limit;
//   - spec/wire-captures.md §4 and appendix A [9]-[25], [32]-[48],
//     [69]-[72]: the exact exchange of the Node SDK.

// Topics (§4.2). Only these exist: a device may subscribe to
// ResponseFilter and publish to the register and poll topics; anything
// else is refused.
const (
	// ResponseFilter is the one filter a device may subscribe to.
	ResponseFilter = "$dps/registrations/res/#"
	// responsePrefix starts every response topic:
	// $dps/registrations/res/{status}/?$rid={rid}[&retry-after={seconds}].
	responsePrefix = "$dps/registrations/res/"
	// registerPrefix is the register topic up to its query:
	// $dps/registrations/PUT/iotdps-register/?$rid={rid}.
	registerPrefix = "$dps/registrations/PUT/iotdps-register/?"
	// pollPrefix is the operation-status topic up to its query:
	// $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}.
	pollPrefix = "$dps/registrations/GET/iotdps-get-operationstatus/?"
)

// Topic query parameters (§4.2, §4.3). $rid is matched exactly and is
// always the first parameter of a response; operationId is matched
// case-insensitively; retry-after is always sent lower-case.
const (
	paramRID         = "$rid"
	paramOperationID = "operationId"
	paramRetryAfter  = "retry-after"
)

// Username parts (§4.1):
// {idScope}/registrations/{registrationId}/api-version={v}[&ClientVersion={ua}].
const (
	segRegistrations   = "registrations" // matched case-insensitively
	paramAPIVersion    = "api-version"   // matched case-insensitively
	paramClientVersion = "ClientVersion" // matched case-insensitively; logged only
)

// WebSocket (§1.1, §4.7): paths the SDKs use and the subprotocol, matched
// case-insensitively and echoed as the client spelled it.
const (
	// WebSocketPath is the path of the Node, Python and C SDKs; C# uses "/".
	WebSocketPath = "/$iothub/websocket"
	subprotocol   = "mqtt"
)

// Transport names (engine.Request.Transport, logs) and mochi listener ids.
const (
	transportMQTT   = "mqtt"
	transportMQTTWS = "mqtt-ws"
)

// protocolLevel is MQTT 3.1.1, the only level DPS speaks (§4.1).
const protocolLevel = 4

// Bounds of client-supplied strings.
const (
	maxUsernameLen = 1024
	maxRIDLen      = 256
)

// Default limits (Limits fields at zero).
const (
	// DefaultMaxPacketSize bounds one MQTT packet: the 96 KB DPS message
	// (§9) plus room for the fixed header, topic and packet id.
	DefaultMaxPacketSize = 96<<10 + 4<<10
	// DefaultMaxConnections bounds open connections in total.
	DefaultMaxConnections = 100_000
	// DefaultMaxConnectionsPerIP bounds open connections per client IP
	// address (devices behind one NAT share an address).
	DefaultMaxConnectionsPerIP = 1_000
	// DefaultConnectTimeout bounds the TLS handshake (or, over
	// WebSocket, the time after the upgrade) plus the CONNECT packet.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxKeepAlive caps the keep-alive a device asks for (Node
	// asks 180 s); 0 (no keep-alive) gets this value too.
	DefaultMaxKeepAlive = 300 * time.Second
	// DefaultPacketRate and DefaultPacketBurst bound the requests
	// (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ) of one connection per
	// second; a connection beyond them is disconnected. A registration
	// takes four or five.
	DefaultPacketRate  = 10
	DefaultPacketBurst = 20
	// DefaultMaxInflight bounds the requests of one connection that the
	// engine works on at once; beyond it a request is answered 429.
	DefaultMaxInflight = 4
	// DefaultRequestTimeout bounds one engine call.
	DefaultRequestTimeout = 30 * time.Second
)
