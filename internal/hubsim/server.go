package hubsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/pki"
)

// Server serves a Sim over TLS on one listener. Create it with Listen.
type Server struct {
	sim  *Sim
	ln   net.Listener
	srv  *http.Server
	errc chan error // receives Serve's error once; buffered

	closeOnce sync.Once
	closeErr  error
}

// TLSConfig returns a server TLS configuration whose certificates are
// signed by ca: one for "localhost" and 127.0.0.1, and one minted per SNI
// name that is a hub of sim (so hubs added later work too).
func TLSConfig(ca *pki.CA, sim *Sim) (*tls.Config, error) {
	m, err := pki.NewMinter(ca, []string{"localhost", "127.0.0.1"}, sim.HasHub)
	if err != nil {
		return nil, fmt.Errorf("hubsim: %w", err)
	}
	return pki.ServerTLS(m.GetCertificate), nil
}

// Listen starts serving sim on addr ("127.0.0.1:0" picks a port) with
// tlsConf (see TLSConfig). Close stops it.
func Listen(sim *Sim, addr string, tlsConf *tls.Config) (*Server, error) {
	if sim == nil || tlsConf == nil {
		return nil, fmt.Errorf("%w: Listen needs a Sim and a TLS config", ErrConfig)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("hubsim: %w", err)
	}
	s := &Server{
		sim: sim,
		ln:  ln,
		srv: &http.Server{
			Handler:           sim,
			TLSConfig:         tlsConf.Clone(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(sim.log.Handler(), slog.LevelDebug),
		},
		errc: make(chan error, 1),
	}
	go func() {
		err := s.srv.ServeTLS(ln, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.errc <- err
	}()
	return s, nil
}

// Sim returns the simulator served.
func (s *Server) Sim() *Sim { return s.sim }

// Addr returns the listening address, e.g. "127.0.0.1:43125".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port returns the listening TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// ConnectionString returns the owner connection string of hub host with
// this server's port in HostName.
func (s *Server) ConnectionString(host string) (string, error) {
	for _, h := range s.sim.Hubs() {
		if normHost(h.HostName) == normHost(host) {
			return h.ConnectionStringPort(s.Port()), nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownHub, host)
}

// Err receives the error that stopped serving (nil after Close), once.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops the server and closes its connections. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.srv.Close()
		if err := s.sim.Flush(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}
