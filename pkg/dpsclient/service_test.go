package dpsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/serviceapi"
	"github.com/opendps/opendps/internal/store"
)

// serveTLS serves the service API on 127.0.0.1 and returns the owner
// connection string of a fresh instance and a client trusting the CA.
func serveTLS(t *testing.T) (*enrollmenttest.Instance, string, *http.Client) {
	t.Helper()
	c, _ := netutil.FreeLoopbackAddr()
	p, _ := netutil.FreeLoopbackAddr()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir(), Region: enrollmenttest.Region,
		ClientURL: "http://" + c, PeerURL: "http://" + p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	in := enrollmenttest.NewInstance(t, st, "client")
	h, err := serviceapi.New(serviceapi.Config{Store: st, ServiceDomain: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.NewCA("test")
	m, _ := pki.NewMinter(ca, []string{"localhost", "127.0.0.1"}, func(h string) bool { return strings.HasSuffix(h, ".localhost") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: pki.ServerTLS(m.GetCertificate)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM, 0o600)
	hc, err := HTTPClient(caFile)
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	cs := fmt.Sprintf("HostName=%s.localhost:%d;SharedAccessKeyName=%s;SharedAccessKey=%s", in.Name, port, model.OwnerPolicy, in.OwnerKey)
	return in, cs, hc
}

func TestServiceClient(t *testing.T) {
	ctx := context.Background()
	in, cs, hc := serveTLS(t)
	s, err := NewService(cs, hc)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.CreateOrUpdateEnrollment(ctx, &IndividualEnrollment{RegistrationID: "go-1",
		EnrollmentCommon: EnrollmentCommon{Attestation: &AttestationMechanism{Type: "symmetricKey"}}})
	if err != nil || e.Attestation.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("create: %+v %v", e, err)
	}
	e.ProvisioningStatus = "disabled"
	upd, err := s.CreateOrUpdateEnrollment(ctx, e)
	if err != nil || upd.ProvisioningStatus != "disabled" {
		t.Fatalf("update: %v", err)
	}
	if _, err := s.CreateOrUpdateEnrollment(ctx, e); !errors.Is(err, ErrServicePrecondition) {
		t.Errorf("stale etag: err = %v", err)
	}
	if att, err := s.AttestationMechanism(ctx, "go-1"); err != nil || att.SymmetricKey.PrimaryKey != e.Attestation.SymmetricKey.PrimaryKey {
		t.Errorf("attestation: %v", err)
	}
	res, err := s.BulkEnrollments(ctx, "create", []*IndividualEnrollment{
		{RegistrationID: "go-2", EnrollmentCommon: EnrollmentCommon{Attestation: &AttestationMechanism{Type: "symmetricKey"}}},
		{RegistrationID: "go-3", EnrollmentCommon: EnrollmentCommon{Attestation: &AttestationMechanism{Type: "symmetricKey"}}},
	})
	if err != nil || !res.IsSuccessful {
		t.Fatalf("bulk: %+v %v", res, err)
	}
	var ids []string
	for cont, pages := "", 0; ; pages++ {
		page, next, err := s.QueryEnrollments(ctx, 2, cont)
		if err != nil || pages > 5 {
			t.Fatalf("query: %v (page %d)", err, pages)
		}
		for _, e := range page {
			ids = append(ids, e.RegistrationID)
		}
		if next == "" {
			break
		}
		cont = next
	}
	if strings.Join(ids, ",") != "go-1,go-2,go-3" {
		t.Errorf("query ids = %v", ids)
	}
	if _, err := s.CreateOrUpdateGroup(ctx, &EnrollmentGroup{EnrollmentGroupID: "grp",
		EnrollmentCommon: EnrollmentCommon{Attestation: &AttestationMechanism{Type: "symmetricKey"}}}); err != nil {
		t.Fatal(err)
	}
	if groups, next, err := s.QueryGroups(ctx, 0, ""); err != nil || len(groups) != 1 || next != "" {
		t.Errorf("groups: %d %q %v", len(groups), next, err)
	}
	if regs, _, err := s.QueryGroupRegistrations(ctx, "grp", 10, ""); err != nil || len(regs) != 0 {
		t.Errorf("registrations: %v %v", regs, err)
	}
	if _, err := s.GetRegistration(ctx, "go-1"); !errors.Is(err, ErrServiceNotFound) {
		t.Errorf("registration: err = %v", err)
	}
	if err := s.DeleteEnrollment(ctx, "go-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEnrollment(ctx, "go-1"); !errors.Is(err, ErrServiceNotFound) {
		t.Errorf("after delete: err = %v", err)
	}
	bad, _ := NewService(strings.Replace(cs, in.OwnerKey, enrollmenttest.RandomKey(), 1), hc)
	var se *ServiceError
	if _, err := bad.GetGroup(ctx, "grp"); !errors.As(err, &se) || se.Status != 401 || !errors.Is(err, ErrServiceUnauthorized) {
		t.Errorf("wrong key: err = %v", err)
	}
	if _, err := NewService("HostName=x;SharedAccessKey=c2VjcmV0", nil); err == nil {
		t.Error("NewService accepted a connection string without key name")
	}
}
