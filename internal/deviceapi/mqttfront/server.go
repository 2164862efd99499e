package mqttfront

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/opendps/opendps/internal/engine"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("mqttfront: server closed")

// errNoTLS is returned by Serve when Config.TLS is nil.
var errNoTLS = errors.New("mqttfront: Serve needs Config.TLS (DPS has no plain MQTT)")

// Server is the MQTT device front end: a mochi-mqtt broker restricted to
// the DPS topics, whose hooks authenticate every CONNECT with the engine
// and answer every request publish from the engine, to the publishing
// client only. It is safe for concurrent use; Serve and ServeWebSocket
// may run at the same time, any number of times.
type Server struct {
	engine engine.Device
	lim    Limits
	log    *slog.Logger
	tls    *tls.Config // nil: no Serve
	broker *mqtt.Server

	ctx    context.Context // canceled by Close: engine calls stop
	cancel context.CancelFunc
	seq    atomic.Uint64 // connection numbers (mochi client ids)

	mu        sync.Mutex
	closed    bool                      // guarded by mu
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[*conn]struct{}        // guarded by mu
	perIP     map[string]int            // open connections by IP; guarded by mu
	total     int                       // open connections; guarded by mu
	connWG    sync.WaitGroup            // serving goroutines; Add under mu
	reqWG     sync.WaitGroup            // engine calls; Add from connection goroutines only
	closeOnce sync.Once
}

// New returns a running Server (its broker started, no listener yet).
// Close releases it.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, fmt.Errorf("%w: Engine is required", ErrConfig)
	}
	lim := cfg.Limits.withDefaults()
	if err := lim.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s := &Server{engine: cfg.Engine, lim: lim, log: cfg.Log,
		listeners: map[net.Listener]struct{}{}, conns: map[*conn]struct{}{}, perIP: map[string]int{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.TLS != nil {
		s.tls = cfg.TLS.Clone()
		s.tls.NextProtos = nil
		if s.tls.ClientAuth == tls.NoClientCert {
			s.tls.ClientAuth = tls.RequestClientCert
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.broker = mqtt.New(&mqtt.Options{
		Capabilities:             capabilities(lim),
		Logger:                   slog.New(debugOnly{s.log.Handler()}).With("component", "mochi"),
		SysTopicResendInterval:   math.MaxInt32, // nobody may read $SYS
		ClientNetWriteBufferSize: 4 << 10,
		ClientNetReadBufferSize:  4 << 10,
	})
	if err := s.broker.AddHook(&hook{s: s}, nil); err != nil {
		return nil, fmt.Errorf("mqttfront: add hook: %w", err)
	}
	if err := s.broker.Serve(); err != nil { // no listeners: starts the housekeeping loop
		return nil, fmt.Errorf("mqttfront: start broker: %w", err)
	}
	return s, nil
}

// capabilities restricts the broker to what DPS offers (§4.4): QoS at most
// 1, no retained messages, no shared subscriptions, MQTT 3.1.1 and later
// (5 is refused at CONNECT), tiny per-client queues.
func capabilities(lim Limits) *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumPacketSize = uint32(lim.MaxPacketSize)
	c.MaximumQos = 1
	c.RetainAvailable = 0
	c.SharedSubAvailable = 0
	c.SubIDAvailable = 0
	c.TopicAliasMaximum = 0
	c.MinimumProtocolVersion = protocolLevel
	c.MaximumSessionExpiryInterval = 0
	c.MaximumClientWritesPending = 64
	c.MaximumInflight = 64
	c.ReceiveMaximum = 64
	c.MaximumMessageExpiryInterval = int64(lim.RequestTimeout/time.Second) + 60
	return c
}

// Serve accepts MQTT-over-TLS connections on ln until Close, and returns
// ErrServerClosed then (or the listener's error). It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if s.tls == nil {
		ln.Close()
		return errNoTLS
	}
	if !s.addListener(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.removeListener(ln)
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.accept(raw)
	}
}

// accept admits a raw connection (limits) and serves it in a goroutine.
func (s *Server) accept(raw net.Conn) {
	ip := hostOf(raw.RemoteAddr())
	if err := s.reserve(ip); err != nil {
		s.log.Debug("connection refused", "client_addr", ip, "err", err)
		raw.Close()
		return
	}
	raw.SetDeadline(time.Now().Add(s.lim.ConnectTimeout))
	tc := tls.Server(raw, s.tls)
	c := newConn(tc, raw, ip, transportMQTT, func() []*x509.Certificate { return tc.ConnectionState().PeerCertificates })
	go s.serveConn(c)
}

// serveConn runs one connection through the broker; the slot reserved
// for it is released when the connection ends.
func (s *Server) serveConn(c *conn) {
	defer s.release(c.ip)
	if !s.track(c) {
		c.Close()
		return
	}
	defer s.untrack(c)
	defer c.Close()
	if err := s.broker.EstablishConnection(c.transport, c); err != nil {
		s.log.Debug("connection ended", "client_addr", c.ip, "transport", c.transport, "err", err)
	}
}

// reserve counts a new connection from ip against the limits.
func (s *Server) reserve(ip string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrServerClosed
	case s.lim.MaxConnections > 0 && s.total >= s.lim.MaxConnections:
		return errTooManyConnections
	case s.lim.MaxConnectionsPerIP > 0 && s.perIP[ip] >= s.lim.MaxConnectionsPerIP:
		return errTooManyFromIP
	}
	s.total++
	s.perIP[ip]++
	s.connWG.Add(1)
	return nil
}

// release undoes reserve when the connection's goroutine ends.
func (s *Server) release(ip string) {
	s.mu.Lock()
	s.total--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.mu.Unlock()
	s.connWG.Done()
}

var (
	errTooManyConnections = errors.New("mqttfront: too many connections")
	errTooManyFromIP      = errors.New("mqttfront: too many connections from this address")
)

// track registers c so that Close can close it; false once closing.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) removeListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	ln.Close()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting, closes every connection (devices see the
// connection drop; a request in flight gets no answer and the device
// retries), waits for every goroutine of the server and stops the
// broker. It is idempotent and always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		for ln := range s.listeners {
			ln.Close()
		}
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.cancel()
		for _, c := range conns {
			c.abort()
		}
		s.connWG.Wait()
		s.reqWG.Wait()
		s.broker.Close()
	})
	return nil
}

// Connections returns the number of open connections (tests, metrics).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// hostOf is the IP of a TCP address, or its string form.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if a == nil {
		return ""
	}
	if h, _, err := net.SplitHostPort(a.String()); err == nil {
		return h
	}
	return a.String()
}
