package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

// TestRecordActions: the disable/enable and delete buttons of the
// enrollment and group lists, and the registration record's delete, change
// the record they name, return to their list with a message, and are
// refused to a policy without the write right.
func TestRecordActions(t *testing.T) {
	f := newFixture(t)
	sym := &model.AttestationMechanism{Type: model.AttestationSymmetricKey, SymmetricKey: &model.SymmetricKeyAttestation{}}
	f.enr.enr["contoso/dev-1"] = &model.IndividualEnrollment{RegistrationID: "dev-1",
		EnrollmentCommon: model.EnrollmentCommon{Attestation: sym, ProvisioningStatus: model.StatusEnabled, Etag: "e1"}}
	f.enr.grp["contoso/grp-1"] = &model.EnrollmentGroup{EnrollmentGroupID: "grp-1",
		EnrollmentCommon: model.EnrollmentCommon{Attestation: sym, ProvisioningStatus: model.StatusEnabled, Etag: "g1"}}
	f.enr.regs["contoso/dev-1"] = &model.Registration{DeviceRegistrationState: model.DeviceRegistrationState{RegistrationID: "dev-1", Status: "assigned"}}

	// A reader is refused every action, and nothing changes.
	r := f.browser(t)
	r.signInTenant("contoso", readerKey)
	tok := r.csrf("/instances/contoso/enrollments")
	for path, right := range map[string]string{
		"/instances/contoso/enrollments/disable":  "EnrollmentWrite",
		"/instances/contoso/enrollments/delete":   "EnrollmentWrite",
		"/instances/contoso/groups/disable":       "EnrollmentWrite",
		"/instances/contoso/groups/delete":        "EnrollmentWrite",
		"/instances/contoso/registrations/delete": "RegistrationStatusWrite",
	} {
		id := "dev-1"
		if strings.Contains(path, "groups") {
			id = "grp-1"
		}
		if code, body, _ := r.post(path, url.Values{"csrf": {tok}, "id": {id}, "status": {"disabled"}}); code != http.StatusForbidden || !strings.Contains(body, "does not grant "+right) {
			t.Errorf("reader POST %s: %d, want 403 naming %s\n%s", path, code, right, body)
		}
	}
	if calls := f.enr.callLog(); len(calls) != 0 {
		t.Fatalf("the reader's actions reached the store: %v", calls)
	}

	b := f.browser(t)
	b.signInTenant("contoso", ownerKey)
	tok = b.csrf("/instances/contoso/enrollments")
	act := func(path string, form url.Values, wantTo, wantMsg string) {
		t.Helper()
		form.Set("csrf", tok)
		code, body, h := b.post(path, form)
		if code != http.StatusSeeOther || h.Get("Location") != wantTo {
			t.Fatalf("POST %s %v: %d to %q, want 303 to %s\n%s", path, form, code, h.Get("Location"), wantTo, body)
		}
		if _, body, _ := b.get(wantTo); !strings.Contains(body, wantMsg) {
			t.Errorf("after POST %s %v, %s lacks %q:\n%s", path, form, wantTo, wantMsg, body)
		}
	}
	status := func() (string, string) {
		f.enr.mu.Lock()
		defer f.enr.mu.Unlock()
		return f.enr.enr["contoso/dev-1"].ProvisioningStatus, f.enr.grp["contoso/grp-1"].ProvisioningStatus
	}

	act("/instances/contoso/enrollments/disable", url.Values{"id": {"dev-1"}, "status": {"disabled"}},
		"/instances/contoso/enrollments", "Enrollment dev-1 is disabled.")
	act("/instances/contoso/groups/disable", url.Values{"id": {"grp-1"}, "status": {"disabled"}},
		"/instances/contoso/groups", "Enrollment group grp-1 is disabled.")
	if e, g := status(); e != model.StatusDisabled || g != model.StatusDisabled {
		t.Errorf("after Disable: enrollment %s, group %s; want both disabled", e, g)
	}
	if _, body, _ := b.get("/instances/contoso/groups"); !strings.Contains(body, `name="status" value="enabled"><button type="submit">Enable</button>`) {
		t.Errorf("a disabled group is not offered Enable:\n%s", body)
	}
	act("/instances/contoso/enrollments/disable", url.Values{"id": {"dev-1"}, "status": {"enabled"}},
		"/instances/contoso/enrollments", "Enrollment dev-1 is enabled.")
	act("/instances/contoso/groups/disable", url.Values{"id": {"grp-1"}, "status": {"enabled"}},
		"/instances/contoso/groups", "Enrollment group grp-1 is enabled.")
	if e, g := status(); e != model.StatusEnabled || g != model.StatusEnabled {
		t.Errorf("after Enable: enrollment %s, group %s; want both enabled", e, g)
	}

	act("/instances/contoso/enrollments/delete", url.Values{"id": {"dev-1"}},
		"/instances/contoso/enrollments", "Enrollment dev-1 deleted.")
	act("/instances/contoso/groups/delete", url.Values{"id": {"grp-1"}},
		"/instances/contoso/groups", "Enrollment group grp-1 deleted.")
	act("/instances/contoso/registrations/delete", url.Values{"id": {"dev-1"}},
		"/instances/contoso/registrations", "Registration record dev-1 deleted.")
	want := []string{"PutEnrollment contoso dev-1", "PutGroup contoso grp-1", "PutEnrollment contoso dev-1", "PutGroup contoso grp-1",
		"DeleteEnrollment contoso dev-1", "DeleteGroup contoso grp-1", "DeleteRegistration contoso dev-1"}
	if calls := f.enr.callLog(); !slices.Equal(calls, want) {
		t.Errorf("store calls %v, want %v", calls, want)
	}
	if _, ok := f.enr.enr["contoso/dev-1"]; ok {
		t.Errorf("enrollment dev-1 is still stored")
	}
	if _, ok := f.enr.grp["contoso/grp-1"]; ok {
		t.Errorf("group grp-1 is still stored")
	}
	// Disabling a record that is not there says so and changes nothing.
	if code, body, _ := b.post("/instances/contoso/enrollments/disable", url.Values{"csrf": {tok}, "id": {"dev-1"}, "status": {"disabled"}}); code != http.StatusNotFound {
		t.Errorf("disabling a deleted enrollment: %d, want 404\n%s", code, body)
	}
}

// TestCreateSymmetricKey: the create forms hand the keys typed in to the
// service, which validates them (and generates those left empty).
func TestCreateSymmetricKey(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("contoso", ownerKey)
	tok := b.csrf("/instances/contoso/enrollments")
	const pk, sk = "cHJpbWFyeS1rZXktb2YtZGV2LTE=", "c2Vjb25kYXJ5LWtleS1vZi1kZXYtMQ=="
	for path, idField := range map[string]string{"/instances/contoso/enrollments": "registrationId", "/instances/contoso/groups": "enrollmentGroupId"} {
		form := url.Values{"csrf": {tok}, idField: {"k-1"}, "attestation": {"symmetricKey"}, "primaryKey": {" " + pk + " "}, "secondaryKey": {sk}}
		if code, body, _ := b.post(path, form); code != http.StatusSeeOther {
			t.Fatalf("POST %s: %d\n%s", path, code, body)
		}
	}
	e, g := f.enr.enr["contoso/k-1"], f.enr.grp["contoso/k-1"]
	if e == nil || g == nil {
		t.Fatalf("enrollment %v, group %v: want both created", e, g)
	}
	for what, a := range map[string]*model.AttestationMechanism{"enrollment": e.Attestation, "group": g.Attestation} {
		if a.Type != model.AttestationSymmetricKey || a.SymmetricKey == nil || a.SymmetricKey.PrimaryKey != pk || a.SymmetricKey.SecondaryKey != sk {
			t.Errorf("%s stored with attestation %+v, want the form's keys", what, a)
		}
	}
	// An existing id is refused, not overwritten.
	if code, body, _ := b.post("/instances/contoso/enrollments", url.Values{"csrf": {tok}, "registrationId": {"k-1"}}); code != http.StatusConflict || !strings.Contains(body, "exists already") {
		t.Errorf("creating k-1 again: %d, want 409\n%s", code, body)
	}
	if a := f.enr.enr["contoso/k-1"].Attestation; a.SymmetricKey.PrimaryKey != pk {
		t.Errorf("creating k-1 again replaced its keys: %+v", a.SymmetricKey)
	}
}
