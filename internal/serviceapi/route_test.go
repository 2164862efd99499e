package serviceapi

import (
	"errors"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		method, path string
		want         route
		status       int // 0: ok
	}{
		{"GET", "/enrollments/dev1", route{resEnrollment, opGet, "dev1"}, 0},
		{"PUT", "/Enrollments/dev1", route{resEnrollment, opPut, "dev1"}, 0},
		{"DELETE", "/enrollments/dev%3A1", route{resEnrollment, opDelete, "dev:1"}, 0},
		{"POST", "/enrollments", route{resEnrollment, opBulk, ""}, 0},
		{"POST", "/enrollments/", route{resEnrollment, opBulk, ""}, 0},
		{"POST", "/enrollments/query", route{resEnrollment, opQuery, ""}, 0},
		{"POST", "/ENROLLMENTS/QUERY", route{resEnrollment, opQuery, ""}, 0},
		{"GET", "/enrollments/query", route{resEnrollment, opGet, "query"}, 0},
		{"POST", "/enrollments/dev1/attestationmechanism", route{resEnrollment, opAttestation, "dev1"}, 0},
		{"POST", "/enrollmentGroups/g1/attestationMechanism", route{resGroup, opAttestation, "g1"}, 0},
		{"POST", "/enrollmentgroups/g1/attestationmechanism", route{resGroup, opAttestation, "g1"}, 0},
		{"PUT", "/enrollmentGroups/g1", route{resGroup, opPut, "g1"}, 0},
		{"POST", "/enrollmentGroups/", route{resGroup, opBulk, ""}, 0},
		{"POST", "/enrollmentGroups/query", route{resGroup, opQuery, ""}, 0},
		{"GET", "/registrations/dev1", route{resRegistration, opGet, "dev1"}, 0},
		{"DELETE", "/registrations/dev1", route{resRegistration, opDelete, "dev1"}, 0},
		{"POST", "/registrations/g%2E1/query", route{resRegistration, opQuery, "g.1"}, 0},
		{"POST", "/registrations/g1/Query/", route{resRegistration, opQuery, "g1"}, 0},
		{"GET", "/enrollments/dev1/", route{resEnrollment, opGet, "dev1"}, 0},
		{"GET", "/enrollments/a%2Fb", route{resEnrollment, opGet, "a/b"}, 0},

		{"GET", "/", route{}, 404},
		{"GET", "/devices/x", route{}, 404},
		{"GET", "/registrations", route{}, 404},
		{"GET", "/enrollments//x", route{}, 404},
		{"GET", "/enrollments/a/b/c", route{}, 404},
		{"POST", "/enrollments/x/other", route{}, 404},
		{"POST", "/registrations/x/attestationmechanism", route{}, 404},
		{"GET", "/enrollments", route{}, 405},
		{"POST", "/enrollments/dev1", route{}, 405},
		{"PUT", "/registrations/dev1", route{}, 405},
		{"GET", "/enrollments/dev1/attestationmechanism", route{}, 405},
		{"GET", "/registrations/g/query", route{}, 405},
		{"GET", "/enrollments/%zz", route{}, 400},
	}
	for _, tt := range tests {
		got, err := parseRoute(tt.method, tt.path)
		if tt.status == 0 {
			if err != nil || got != tt.want {
				t.Errorf("parseRoute(%s %s) = %+v, %v; want %+v", tt.method, tt.path, got, err, tt.want)
			}
			continue
		}
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Status != tt.status {
			t.Errorf("parseRoute(%s %s) err = %v, want status %d", tt.method, tt.path, err, tt.status)
		}
		if tt.status == 405 && ae != nil && ae.Header.Get("Allow") == "" {
			t.Errorf("parseRoute(%s %s): 405 without Allow", tt.method, tt.path)
		}
	}
}

func TestRouteRights(t *testing.T) {
	tests := []struct {
		rt   route
		want string
	}{
		{route{res: resEnrollment, op: opGet}, model.RightEnrollmentRead},
		{route{res: resGroup, op: opQuery}, model.RightEnrollmentRead},
		{route{res: resGroup, op: opAttestation}, model.RightEnrollmentRead},
		{route{res: resEnrollment, op: opPut}, model.RightEnrollmentWrite},
		{route{res: resGroup, op: opDelete}, model.RightEnrollmentWrite},
		{route{res: resEnrollment, op: opBulk}, model.RightEnrollmentWrite},
		{route{res: resRegistration, op: opGet}, model.RightRegistrationStatusRead},
		{route{res: resRegistration, op: opQuery}, model.RightRegistrationStatusRead},
		{route{res: resRegistration, op: opDelete}, model.RightRegistrationStatusWrite},
	}
	for _, tt := range tests {
		if got := tt.rt.right(); got != tt.want {
			t.Errorf("%+v.right() = %s, want %s", tt.rt, got, tt.want)
		}
	}
}

func TestAudienceMatches(t *testing.T) {
	tests := []struct {
		sr, host, path string
		want           bool
	}{
		{"default.localhost:8443", "default.localhost:8443", "/enrollments/x", true},
		{"default.localhost", "default.localhost:8443", "/enrollments/x", true},
		{"DEFAULT.localhost", "default.LOCALHOST:8443", "/enrollments/x", true},
		{"default.localhost/enrollments", "default.localhost:8443", "/enrollments/x", true},
		{"default.localhost:8443/enrollments/x", "default.localhost:8443", "/enrollments/x", true},
		{"default.localhost/", "default.localhost", "/enrollments/x", true},
		{"default.localhost/enroll", "default.localhost", "/enrollments/x", false},
		{"default.localhost/registrations", "default.localhost", "/enrollments/x", false},
		{"other.localhost", "default.localhost:8443", "/enrollments/x", false},
		{"default.localhost:9999", "default.localhost:8443", "/enrollments/x", false},
		{"default", "default.localhost", "/enrollments/x", false},
		{"", "default.localhost", "/", false},
	}
	for _, tt := range tests {
		if got := audienceMatches(tt.sr, tt.host, tt.path); got != tt.want {
			t.Errorf("audienceMatches(%q, %q, %q) = %v, want %v", tt.sr, tt.host, tt.path, got, tt.want)
		}
	}
}

func TestInstanceName(t *testing.T) {
	h := &Handler{suffix: ".localhost"}
	tests := []struct {
		host, want string
		ok         bool
	}{
		{"default.localhost:8443", "default", true},
		{"Default.LocalHost", "default", true},
		{"default.localhost.", "default", true},
		{"localhost:8443", "", false},
		{"a.b.localhost", "", false},
		{"default.example.com", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := h.instanceName(tt.host)
		if got != tt.want || ok != tt.ok {
			t.Errorf("instanceName(%q) = %q, %v; want %q, %v", tt.host, got, ok, tt.want, tt.ok)
		}
	}
}
