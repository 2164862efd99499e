package dpsclient

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/servicetest"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
)

// serveTLS serves the service API on 127.0.0.1 and returns the owner
// connection string of a fresh instance and a client trusting the CA.
func serveTLS(t *testing.T) (*enrollmenttest.Instance, string, *http.Client) {
	t.Helper()
	srv := servicetest.Start(t, "client")
	hc, err := HTTPClient(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Instance, srv.ConnectionString(), hc
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
