package mqttfront

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opendps/opendps/internal/deviceapi/devreq"
	"github.com/opendps/opendps/internal/engine"
)

// ErrConfig is returned by New, wrapped, for an invalid Config.
var ErrConfig = errors.New("mqttfront: invalid config")

// Config configures a Server.
type Config struct {
	// Engine authenticates devices at CONNECT and answers their requests.
	// Required. It is called concurrently: once per CONNECT and once per
	// register or poll publish.
	Engine engine.Device
	// TLS is the server TLS configuration of Serve (MQTT over TLS, port
	// 8883). It is cloned; the clone requests (does not require) client
	// certificates so that X.509 devices authenticate, and negotiates no
	// ALPN protocol. Nil: Serve refuses to run (DPS has no plain MQTT);
	// ServeWebSocket needs none (the HTTPS server terminates TLS).
	TLS *tls.Config
	// Log receives refusals (Debug), misbehaving clients (Warn) and
	// failures (Error); nil discards. The MQTT library's own messages are
	// all logged at Debug.
	Log *slog.Logger
	// Limits bound what one device and all devices may use; zero fields
	// take the defaults.
	Limits Limits
}

// Limits bound connections and requests. For each field zero means the
// default (the Default* constant named); for the counts a negative value
// means unlimited. Limits are read once, by New.
type Limits struct {
	// MaxPacketSize bounds one MQTT packet in bytes (DefaultMaxPacketSize:
	// 96 KB + 4 KB). A larger packet disconnects the client; a register
	// payload over MaxBody is answered 413 on the response topic.
	MaxPacketSize int
	// MaxBody bounds a register payload in bytes (devreq.DefaultMaxBody,
	// 96 KB).
	MaxBody int
	// MaxConnections bounds open connections in total
	// (DefaultMaxConnections); MaxConnectionsPerIP per client IP address
	// (DefaultMaxConnectionsPerIP). A connection over either is closed
	// before the TLS handshake (WebSocket: answered 503).
	MaxConnections      int
	MaxConnectionsPerIP int
	// ConnectTimeout bounds the TLS handshake and the CONNECT packet
	// (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// MaxKeepAlive caps the keep-alive a device asks for; a device that
	// asks for none gets it too (DefaultMaxKeepAlive). A connection idle
	// for 1.5 keep-alive periods is closed.
	MaxKeepAlive time.Duration
	// PacketRate (per second) and PacketBurst bound the requests of one
	// connection (DefaultPacketRate, DefaultPacketBurst); a connection
	// exceeding them is disconnected, which affects no other connection.
	PacketRate  float64
	PacketBurst int
	// MaxInflight bounds the engine calls of one connection at once
	// (DefaultMaxInflight); a request beyond it is answered 429 with
	// retry-after.
	MaxInflight int
	// RequestTimeout bounds one engine call (DefaultRequestTimeout).
	RequestTimeout time.Duration
}

// withDefaults returns l with zero fields set to their defaults.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxPacketSize, DefaultMaxPacketSize)
	def(&l.MaxBody, devreq.DefaultMaxBody)
	def(&l.MaxConnections, DefaultMaxConnections)
	def(&l.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	def(&l.PacketBurst, DefaultPacketBurst)
	def(&l.MaxInflight, DefaultMaxInflight)
	defDur(&l.ConnectTimeout, DefaultConnectTimeout)
	defDur(&l.MaxKeepAlive, DefaultMaxKeepAlive)
	defDur(&l.RequestTimeout, DefaultRequestTimeout)
	if l.PacketRate == 0 {
		l.PacketRate = DefaultPacketRate
	}
	return l
}

// validate reports the limits New refuses (after defaults).
func (l Limits) validate() error {
	var errs []error
	if l.MaxPacketSize < 1024 {
		errs = append(errs, fmt.Errorf("MaxPacketSize %d is below 1024 bytes", l.MaxPacketSize))
	}
	if l.MaxBody < 0 {
		errs = append(errs, fmt.Errorf("MaxBody %d is negative", l.MaxBody))
	}
	if l.PacketBurst < 0 {
		errs = append(errs, fmt.Errorf("PacketBurst %d is negative", l.PacketBurst))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ConnectTimeout", l.ConnectTimeout}, {"MaxKeepAlive", l.MaxKeepAlive}, {"RequestTimeout", l.RequestTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.v))
		}
	}
	if l.MaxKeepAlive > 65535*time.Second {
		errs = append(errs, fmt.Errorf("MaxKeepAlive %v exceeds the MQTT maximum of 65535 s", l.MaxKeepAlive))
	}
	return errors.Join(errs...)
}
