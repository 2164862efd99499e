package mqttfront

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// IsWebSocketRequest reports whether r is a WebSocket upgrade to one of
// the paths the SDKs use (§1.1): WebSocketPath (Node, Python, C) or "/"
// (C#). The device HTTPS listener routes those to ServeWebSocket and
// everything else to the HTTPS device API.
func IsWebSocketRequest(r *http.Request) bool {
	return (r.URL.Path == WebSocketPath || r.URL.Path == "/") && websocket.IsWebSocketUpgrade(r)
}

// ServeWebSocket serves MQTT over WebSocket (§4.7) on an HTTPS request:
// it upgrades the connection, choosing the subprotocol "mqtt" matched
// case-insensitively and echoed as the client spelled it, and runs the
// MQTT session until it ends. The request must come through a TLS
// listener requesting client certificates for X.509 devices to
// authenticate (the chain is read from r.TLS). Limits apply as to Serve;
// a refused upgrade is answered 400 (no mqtt subprotocol) or 503 (limits,
// closing). It blocks for the whole session.
func (s *Server) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	proto := chooseSubprotocol(websocket.Subprotocols(r))
	if proto == "" {
		http.Error(w, "mqttfront: a WebSocket subprotocol \"mqtt\" is required", http.StatusBadRequest)
		return
	}
	ip := hostOf(addrOf(r.RemoteAddr))
	if err := s.reserve(ip); err != nil {
		s.log.Debug("websocket connection refused", "client_addr", ip, "err", err)
		http.Error(w, "mqttfront: "+strings.TrimPrefix(err.Error(), "mqttfront: "), http.StatusServiceUnavailable)
		return
	}
	up := websocket.Upgrader{
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
		CheckOrigin:     func(*http.Request) bool { return true }, // devices, not browsers; auth is in CONNECT
	}
	ws, err := up.Upgrade(w, r, http.Header{"Sec-Websocket-Protocol": {proto}})
	if err != nil { // the upgrader answered the client
		s.release(ip)
		return
	}
	ws.SetReadLimit(int64(2 * s.lim.MaxPacketSize))
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	wc := &wsConn{ws: ws}
	wc.SetDeadline(time.Now().Add(s.lim.ConnectTimeout)) // replaces the HTTP server's deadlines
	c := newConn(wc, rawOf(ws.UnderlyingConn()), ip, transportMQTTWS, func() []*x509.Certificate { return certs })
	s.serveConn(c)
}

// rawOf returns the TCP connection under a TLS one.
func rawOf(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// chooseSubprotocol returns the client's spelling of "mqtt", or "".
func chooseSubprotocol(offered []string) string {
	for _, p := range offered {
		if strings.EqualFold(p, subprotocol) {
			return p
		}
	}
	return ""
}

func addrOf(remote string) net.Addr {
	if ap, err := net.ResolveTCPAddr("tcp", remote); err == nil {
		return ap
	}
	return strAddr(remote)
}

type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

// errTextMessage is a text WebSocket message: MQTT travels in binary
// messages only (MQTT 3.1.1 §6).
var errTextMessage = errors.New("mqttfront: text WebSocket message")

// wsConn carries the MQTT byte stream in binary WebSocket messages: a
// message may hold several MQTT packets or part of one. The broker reads
// from one goroutine and serializes its writes, as gorilla/websocket
// requires; Close may run concurrently. The broker's reader also sets the
// write deadline while a response is being written, which gorilla does
// not allow: the deadline is stored and applied before each write.
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader                 // the message being read; nil between messages
	wdl atomic.Pointer[time.Time] // write deadline; nil: none
	wmu sync.Mutex                // serializes writes with their deadline
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return 0, io.EOF
				}
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, errTextMessage
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var dl time.Time
	if t := c.wdl.Load(); t != nil {
		dl = *t
	}
	c.ws.SetWriteDeadline(dl)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close sends a close frame (best effort, 1 s) and closes the connection.
func (c *wsConn) Close() error {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *wsConn) SetDeadline(t time.Time) error {
	c.wdl.Store(&t)
	return c.ws.SetReadDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	return nil
}
