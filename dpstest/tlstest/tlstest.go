// Package tlstest serves HTTP handlers over TLS on 127.0.0.1 with
// certificates that a fresh CA mints for localhost, 127.0.0.1 and any
// *.localhost name, the way opendps nodes serve instance host names
// ({instance}.localhost).
package tlstest

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/pki"
)

// Serve serves h until the test ends and returns the port and the CA that
// clients must trust.
func Serve(t testing.TB, h http.Handler) (port int, ca *pki.CA) {
	t.Helper()
	ca, err := pki.NewCA("tlstest")
	if err != nil {
		t.Fatal(err)
	}
	m, err := pki.NewMinter(ca, []string{"localhost", "127.0.0.1"}, func(h string) bool { return strings.HasSuffix(h, ".localhost") })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: pki.ServerTLS(m.GetCertificate)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, ca
}
