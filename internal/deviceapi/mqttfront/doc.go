// Package mqttfront serves the DPS device runtime API over MQTT 3.1.1,
// over TLS (port 8883) and over WebSocket on the HTTPS device listener
// (spec/dps-protocol.md §4, §1.1, §11; spec/wire-captures.md §4), on top
// of the provisioning engine (engine.Device), which it shares with the
// HTTPS front end: authentication, enrollment matching, allocation and
// throttling are the engine's, never this package's.
//
// The broker is github.com/mochi-mqtt/server/v2, restricted by one hook:
//
//	CONNECT   client id = registration id; username
//	          {idScope}/registrations/{registrationId}/api-version=...[&ClientVersion=...];
//	          password = SAS token, or none with a TLS client certificate.
//	          The engine checks the credential (engine.Device.Authenticate)
//	          before CONNACK; CONNACK session-present is always 0.
//	SUBSCRIBE $dps/registrations/res/# only (granted QoS ≤ 1; others 0x80)
//	PUBLISH   $dps/registrations/PUT/iotdps-register/?$rid={rid}
//	          $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}
//	          (anything else, or QoS 2, disconnects the client)
//	response  $dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]
//	          JSON always, QoS 1, written to the requesting client only
//
// Decisions where DPS is silent or ambiguous:
//   - CONNECT refusals (MQTT 3.1.1 return codes): protocol level other than
//     4 → 1 (an MQTT 5 client gets reason 0x84); a will → 5; a username that
//     does not parse → 4; a client id other than the username's
//     registration id (case-insensitively) → 2; the engine refusing the
//     credential, or not knowing the ID scope → 5; the engine unavailable
//     → 3. Real DPS accepts a wrong SAS token at CONNECT and answers 401 on
//     the register response (§4.1); a 5 is what the Node SDK reports as
//     "Not authorized", and no unauthenticated connection may subscribe.
//   - The status segment is 202 while assigning and 200 once terminal, on
//     register and poll alike (§4.3); the one-round-trip fast path of the
//     engine therefore answers a register with res/200 and status
//     "assigned", which the Node MQTT transport accepts without polling.
//   - Errors keep their HTTP status and the DPS error body (§2.7): 400 for
//     a bad body or operation id, 401/404 from the engine, 413 for a
//     payload over 96 KB, 429 with retry-after when throttled (the SDKs
//     retry), 500 with a tracking id for anything unexpected.
//   - A register payload may be empty or blank (C#), JSON with or without
//     registrationId (which must match, ignoring case) and payload; the
//     poll payload is ignored (Node sends " ").
//   - $rid is opaque and echoed byte for byte as the device sent it (Python
//     percent-encodes it); parameters of a request topic may come in any
//     order and unknown ones are ignored.
//   - A device not subscribed to the response filter gets no response, as
//     MQTT routing would give it none.
//   - Every connection gets a broker client id of its own, so two devices
//     with one registration id in two ID scopes, or two connections of one
//     device, never take over each other's session.
//   - WebSocket: paths /$iothub/websocket and / (IsWebSocketRequest),
//     subprotocol "mqtt" in any case, echoed as sent; binary messages; any
//     Origin (devices are not browsers; authentication is in CONNECT).
//
// Limits (Limits, with defaults): packet size, connections in total and
// per client IP, CONNECT timeout, keep-alive cap, a request rate per
// connection (a flooding client is disconnected, others are not
// affected), and engine calls in flight per connection. See
// docs/mqtt.md.
package mqttfront
