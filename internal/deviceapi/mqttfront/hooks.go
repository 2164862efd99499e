package mqttfront

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"golang.org/x/time/rate"
)

// hook is the broker's only hook: it turns the general-purpose broker
// into the DPS device API. Every method runs on the client's connection
// goroutine.
type hook struct {
	mqtt.HookBase
	s *Server
}

func (h *hook) ID() string { return "opendps-dps" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead,
		mqtt.OnPublish, mqtt.OnPublished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// errRefused is what every CONNECT refusal (*refusal) unwraps to.
var errRefused = errors.New("mqttfront: connection refused")

// OnConnect checks and authenticates a CONNECT (§4.1) before the broker
// answers it, and answers refusals itself (the broker then closes the
// connection): protocol level other than 4 → 1 (0x84 to MQTT 5); a will
// → 5; a username that does not parse → 4; a client id that is not the
// username's registration id → 2; the engine refusing the credential
// (401, 404 unknown scope, 400) → 5; the engine unavailable → 3. On
// success the connection gets its session, a client id of its own (two
// devices, or two connections of one device, never share broker state)
// and a clean session, so CONNACK always says session-present 0.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c := connOf(cl)
	if c == nil {
		return h.refuse(cl, packets.Err3ServerUnavailable, errors.New("mqttfront: connection of unknown origin"))
	}
	if pk.ProtocolVersion != protocolLevel {
		code := packets.Err3UnsupportedProtocolVersion
		if pk.ProtocolVersion == 5 {
			code = packets.ErrUnsupportedProtocolVersion
		}
		return h.refuse(cl, code, fmt.Errorf("protocol level %d", pk.ProtocolVersion))
	}
	if pk.Connect.WillFlag {
		return h.refuse(cl, packets.Err3NotAuthorized, errors.New("a will message"))
	}
	u, err := parseUsername(string(pk.Connect.Username))
	if err != nil {
		return h.refuse(cl, packets.ErrMalformedUsernameOrPassword, err)
	}
	if !strings.EqualFold(pk.Connect.ClientIdentifier, u.RegistrationID) {
		return h.refuse(cl, packets.Err3ClientIdentifierNotValid,
			fmt.Errorf("client id %q is not the registration id %q of the username", clipID(pk.Connect.ClientIdentifier), u.RegistrationID))
	}
	sess := h.s.newSession(c, u, string(pk.Connect.Password))
	if err := h.authenticate(sess); err != nil {
		return h.refuse(cl, packets.Err3NotAuthorized, err)
	}
	cl.ID = u.RegistrationID + "#" + strconv.FormatUint(h.s.seq.Add(1), 36)
	cl.Properties.Clean = true
	cl.State.Keepalive = h.s.keepAlive(pk.Connect.Keepalive)
	c.sess.Store(sess)
	sess.log.Debug("device connected", "keep_alive", cl.State.Keepalive)
	return nil
}

// authenticate asks the engine whether the session's credential is good,
// and returns a *refusal when not: 5 when the engine refuses it (4xx but
// 429), 3 when the engine fails (5xx, 429, timeout).
func (h *hook) authenticate(sess *session) error {
	ctx, cancel := context.WithTimeout(h.s.ctx, h.s.lim.RequestTimeout)
	defer cancel()
	err := h.s.engine.Authenticate(ctx, sess.request())
	if err == nil {
		return nil
	}
	sess.cancel()
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != 429 {
		return &refusal{code: packets.Err3NotAuthorized, err: err}
	}
	sess.log.Warn("authentication failed", "err", err)
	return &refusal{code: packets.Err3ServerUnavailable, err: err}
}

// refusal is a CONNECT refusal to be answered with code.
type refusal struct {
	code packets.Code
	err  error
}

func (r *refusal) Error() string { return fmt.Sprintf("%v: %v", errRefused, r.err) }
func (r *refusal) Unwrap() error { return errRefused }

// OnConnectAuthenticate lets in exactly the connections OnConnect
// authenticated (OnConnect has already answered the others). A refusal
// from OnConnect never reaches here: it is answered in refuse.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return sessionOf(cl) != nil
}

// refuse answers CONNACK with code (or the code of a *refusal cause) and
// returns the error that makes the broker close the connection.
func (h *hook) refuse(cl *mqtt.Client, code packets.Code, cause error) error {
	var r *refusal
	if !errors.As(cause, &r) {
		r = &refusal{code: code, err: cause}
	}
	h.s.log.Debug("connection refused", "client_addr", cl.Net.Remote, "code", r.code.Code, "err", r.err)
	h.s.broker.SendConnack(cl, r.code, false, nil)
	return r
}

// OnACLCheck: a device may publish only to the register and poll topics
// and subscribe only to ResponseFilter. Reads of routed messages are
// refused for every topic (a response topic never equals the filter), so
// nothing the broker routes ever reaches a device: responses are written
// to their one client directly.
func (h *hook) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	if write {
		_, err := parseTopic(topic)
		return err == nil
	}
	return topic == ResponseFilter
}

// OnPacketRead enforces what the broker would accept but DPS does not,
// before the packet is processed: a publish to anything but a DPS
// request topic, a QoS 2 publish and an AUTH packet disconnect the
// client, and so does exceeding the connection's request rate.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	t := pk.FixedHeader.Type
	switch t {
	case packets.Connect, packets.Puback, packets.Disconnect:
		return pk, nil
	case packets.Auth:
		return pk, h.reject(cl, "AUTH packet")
	case packets.Publish:
		if pk.FixedHeader.Qos > 1 {
			return pk, h.reject(cl, "QoS 2 publish")
		}
		if _, err := parseTopic(pk.TopicName); err != nil {
			return pk, h.reject(cl, "publish to "+strconv.Quote(clipID(pk.TopicName)))
		}
	}
	if sess := sessionOf(cl); sess != nil && sess.packets != nil && !sess.packets.Allow() {
		return pk, h.reject(cl, "request rate exceeded")
	}
	return pk, nil
}

func (h *hook) reject(cl *mqtt.Client, why string) error {
	log := h.s.log
	if sess := sessionOf(cl); sess != nil {
		log = sess.log
	}
	log.Warn("disconnecting misbehaving client", "client_addr", cl.Net.Remote, "reason", why)
	return packets.ErrRejectPacket
}

// OnPublish keeps every device publish from being routed (or retained):
// the broker acknowledges it and OnPublished answers it.
func (h *hook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	return pk, packets.CodeSuccessIgnore
}

// OnPublished runs after the broker acknowledged a request publish (PUBACK
// for QoS 1), and starts answering it.
func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	sess := sessionOf(cl)
	r, err := parseTopic(pk.TopicName)
	if sess == nil || err != nil {
		return // unreachable: OnPacketRead and OnConnectAuthenticate let neither through
	}
	h.s.dispatch(cl, sess, r, pk.Payload)
}

// OnDisconnect ends the session: engine calls of the connection stop.
func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if sess := sessionOf(cl); sess != nil {
		sess.cancel()
		sess.log.Debug("device disconnected", "err", err)
	}
}

// newSession builds the session of an authenticating connection.
func (s *Server) newSession(c *conn, u username, password string) *session {
	sess := &session{scope: u.IDScope, regID: u.RegistrationID, sas: password, certs: c.peerCerts(),
		ip: c.ip, transport: c.transport}
	if s.lim.MaxInflight > 0 {
		sess.inflight = make(chan struct{}, s.lim.MaxInflight)
	}
	if s.lim.PacketRate > 0 {
		sess.packets = rate.NewLimiter(rate.Limit(s.lim.PacketRate), max(s.lim.PacketBurst, 1))
	}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	// No registration id or scope: the session may be one this node only
	// forwards (data residency, docs/dr.md); the serving engine logs them.
	sess.log = s.log.With("client_addr", c.ip, "transport", c.transport, "client_version", clipID(u.ClientVersion))
	return sess
}

// keepAlive caps the device's keep-alive (seconds); 0 gets the cap.
func (s *Server) keepAlive(asked uint16) uint16 {
	limit := uint16(s.lim.MaxKeepAlive / time.Second)
	if asked == 0 || asked > limit {
		return limit
	}
	return asked
}

// request is the engine request of the session (a fresh copy per call).
func (s *session) request() *engine.Request {
	return &engine.Request{IDScope: s.scope, RegistrationID: s.regID, SASToken: s.sas,
		PeerCertificates: s.certs, Transport: s.transport, ClientAddr: s.ip}
}

// clipID bounds client text in logs and messages.
func clipID(s string) string {
	const n = 200
	if len(s) > n {
		return s[:n] + "..."
	}
	if !isPrintable(s) {
		return strconv.Quote(s)
	}
	return s
}

func isPrintable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) < 0
}
