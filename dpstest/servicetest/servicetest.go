// Package servicetest serves the service API of one fresh instance over
// TLS on 127.0.0.1, for tests of its clients (the Go client, the CLI):
//
//	srv := servicetest.Start(t, "cli")
//	hc, _ := dpsclient.HTTPClient(srv.CAFile)
//	s, _ := dpsclient.NewService(srv.ConnectionString(), hc)
//
// The server answers for {instance}.localhost; clients reach it through
// the port in the connection string.
package servicetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/dpstest/tlstest"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/serviceapi"
	"github.com/opendps/opendps/internal/store"
)

// Server is a running service API and what a test needs to reach it.
type Server struct {
	Store       *store.Store
	Enrollments *enrollment.Service      // the enrollment logic behind the API
	Instance    *enrollmenttest.Instance // with the fixtures of enrollmenttest.NewInstance
	Port        int                      // TLS port on 127.0.0.1
	CAFile      string                   // PEM file of the CA of the server certificate
}

// Start serves the service API of a new instance named name, over a store
// of its own in region enrollmenttest.Region. Everything stops when the
// test ends.
func Start(t testing.TB, name string) *Server {
	t.Helper()
	st := storetest.New(t, enrollmenttest.Region)
	s := &Server{Store: st, Enrollments: enrollment.New(st), Instance: enrollmenttest.NewInstance(t, st, name)}
	h, err := serviceapi.New(serviceapi.Config{Store: st, Enrollments: s.Enrollments, ServiceDomain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	port, ca := tlstest.Serve(t, h)
	s.Port = port
	s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(s.CAFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// ConnectionString returns the connection string of the instance's owner
// policy (every right), host {instance}.localhost:{Port}.
func (s *Server) ConnectionString() string {
	return fmt.Sprintf("HostName=%s.localhost:%d;SharedAccessKeyName=%s;SharedAccessKey=%s",
		s.Instance.Name, s.Port, model.OwnerPolicy, s.Instance.OwnerKey)
}
