// Package netutil holds small network helpers shared by clients.
package netutil

import (
	"context"
	"net"
	"strings"
)

// IsLocalhostName reports whether host (without port) is "localhost" or a
// name under ".localhost", which RFC 6761 reserves for the loopback interface.
func IsLocalhostName(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// DialContext dials like net.Dialer but sends names under ".localhost" to
// 127.0.0.1, so that per-instance and per-hub host names of a local
// deployment ({name}.localhost) work without DNS. Its signature fits
// http.Transport.DialContext.
func DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if host, port, err := net.SplitHostPort(addr); err == nil && IsLocalhostName(host) {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	return d.DialContext(ctx, network, addr)
}

// FreeLoopbackAddr returns "127.0.0.1:port" for a port that was free a
// moment ago (for tests and for dev deployments picking their ports).
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
