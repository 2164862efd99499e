package mqttfront

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"golang.org/x/time/rate"
)

// conn is a device connection as the broker sees it (its net.Conn), with
// what the hooks need: the client address, the transport, the TLS client
// chain, and the session once CONNECT is authenticated.
type conn struct {
	net.Conn                             // *tls.Conn or *wsConn
	raw       net.Conn                   // the TCP connection underneath
	ip        string                     // client IP address
	transport string                     // transportMQTT or transportMQTTWS
	peerCerts func() []*x509.Certificate // valid after the TLS handshake
	sess      atomic.Pointer[session]    // set by OnConnect when authenticated
	closeOnce sync.Once
}

func newConn(c, raw net.Conn, ip, transport string, peerCerts func() []*x509.Certificate) *conn {
	return &conn{Conn: c, raw: raw, ip: ip, transport: transport, peerCerts: peerCerts}
}

// Close closes the connection once (the broker and the server both may).
func (c *conn) Close() error {
	c.closeOnce.Do(func() { c.Conn.Close() })
	return nil
}

// abort closes the TCP connection at once, without the TLS close_notify
// or WebSocket close frame that Close may block on; the broker's Close
// call that follows finds it closed.
func (c *conn) abort() { c.raw.Close() }

// connOf returns the conn behind a broker client, or nil.
func connOf(cl *mqtt.Client) *conn {
	c, _ := cl.Net.Conn.(*conn)
	return c
}

// sessionOf returns the authenticated session of a broker client, or nil.
func sessionOf(cl *mqtt.Client) *session {
	if c := connOf(cl); c != nil {
		return c.sess.Load()
	}
	return nil
}

// session is what an authenticated CONNECT established: the identity the
// engine checked and the per-connection limits. Its fields are set
// before it is published to conn.sess and never change after.
type session struct {
	scope, regID string
	sas          string
	certs        []*x509.Certificate
	ip           string
	transport    string
	log          *slog.Logger

	ctx      context.Context // canceled when the connection ends
	cancel   context.CancelFunc
	packets  *rate.Limiter // nil: unlimited
	inflight chan struct{} // semaphore of engine calls; nil: unlimited
}

// tryAcquire takes an engine-call slot, false when all are busy.
func (s *session) tryAcquire() bool {
	if s.inflight == nil {
		return true
	}
	select {
	case s.inflight <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *session) releaseSlot() {
	if s.inflight != nil {
		<-s.inflight
	}
}
