package console

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/sas"
)

// Tests of the pages that close the console's gaps against the CLI:
// policies, instance delete, X.509/TPM enrollments, lost writes, fences,
// instances primary elsewhere, and the sign-in rate limit.

const (
	ownerKey  = "b3duZXIta2V5LW9mLWNvbnRvc28=" // contoso's owner: every right
	readerKey = "cmVhZGVyLWtleS1vZi1jb250b3Nv" // contoso's reader: EnrollmentRead, RegistrationStatusRead
)

// drFixture is newFixture's instances with a fake DR and cfg adjusted by
// tune.
func drFixture(t *testing.T, tune func(*Config)) (*fixture, *fakeDR) {
	t.Helper()
	f := newFixture(t) // for its fakes; its server is not used
	d := &fakeDR{}
	cfg := Config{Instances: f.inst, Enrollments: f.enr, Catalog: regions.Builtin(), OperatorToken: testToken,
		RegionName: "westeurope", DR: d, SampleInterval: -1}
	if tune != nil {
		tune(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.srv = httptest.NewServer(c)
	t.Cleanup(f.srv.Close)
	return f, d
}

// postMultipart posts a multipart form (fields, and files by field name).
func (b *browser) postMultipart(path string, fields url.Values, files map[string]string) (int, string, http.Header) {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	for field, content := range files {
		fw, _ := mw.CreateFormFile(field, field+".pem")
		fw.Write([]byte(content))
	}
	mw.Close()
	req, _ := http.NewRequest("POST", b.base+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	return resp.StatusCode, body.String(), resp.Header
}

func TestPolicies(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInOperator()
	code, body, _ := b.get("/instances/contoso/policies")
	if code != http.StatusOK {
		t.Fatalf("policies: %d\n%s", code, body)
	}
	for _, want := range []string{"owner", "reader", ownerKey, readerKey,
		"HostName=;SharedAccessKeyName=owner;SharedAccessKey=" + ownerKey} {
		if !strings.Contains(body, want) {
			t.Errorf("the policy list lacks %q", want)
		}
	}
	tok := csrfRE.FindStringSubmatch(body)[1]

	// Add, with rights; adding it again fails.
	form := url.Values{"csrf": {tok}, "action": {"add"}, "keyName": {"ops"}, "rights": {"EnrollmentRead", "RegistrationStatusWrite"}}
	if code, body, _ := b.post("/instances/contoso/policies", form); code != http.StatusSeeOther {
		t.Fatalf("add: %d\n%s", code, body)
	}
	_, body, _ = b.get("/instances/contoso/policies")
	if !strings.Contains(body, "Policy ops added with EnrollmentRead, RegistrationStatusWrite.") {
		t.Errorf("no message after adding ops:\n%s", body)
	}
	if code, body, _ := b.post("/instances/contoso/policies", form); code != http.StatusPreconditionFailed || !strings.Contains(body, "already exists") {
		t.Errorf("adding ops twice: %d, want 412 'already exists'", code)
	}
	// Change its rights.
	if code, _, _ := b.post("/instances/contoso/policies", url.Values{"csrf": {tok}, "action": {"set"}, "keyName": {"ops"}, "rights": {"ServiceConfig"}}); code != http.StatusSeeOther {
		t.Errorf("set rights: %d", code)
	}
	if in, _ := f.inst.Lookup(t.Context(), "contoso"); in.Policy("ops") == nil || in.Policy("ops").Rights != "ServiceConfig" {
		t.Errorf("ops after set: %+v", in.Policy("ops"))
	}
	if code, body, _ := b.post("/instances/contoso/policies", url.Values{"csrf": {tok}, "action": {"set"}, "keyName": {"ops"}}); code != http.StatusBadRequest || !strings.Contains(body, "at least one right") {
		t.Errorf("set without rights: %d, want 400", code)
	}
	// Regenerate: the shown key changes.
	old := ""
	if in, _ := f.inst.Lookup(t.Context(), "contoso"); in.Policy("ops") != nil {
		old = in.Policy("ops").SecondaryKey
	}
	if code, _, _ := b.post("/instances/contoso/policies/regenerate", url.Values{"csrf": {tok}, "keyName": {"ops"}, "key": {"secondary"}}); code != http.StatusSeeOther {
		t.Errorf("regenerate: %d", code)
	}
	in, _ := f.inst.Lookup(t.Context(), "contoso")
	_, body, _ = b.get("/instances/contoso/policies")
	if nk := in.Policy("ops").SecondaryKey; nk == old || !strings.Contains(body, nk) || strings.Contains(body, old) {
		t.Errorf("after regenerate: key %q (was %q); the page does not show only the new one", nk, old)
	}
	// Remove.
	if code, _, _ := b.post("/instances/contoso/policies/remove", url.Values{"csrf": {tok}, "keyName": {"ops"}}); code != http.StatusSeeOther {
		t.Errorf("remove: %d", code)
	}
	if in, _ := f.inst.Lookup(t.Context(), "contoso"); in.Policy("ops") != nil {
		t.Errorf("ops still there after remove")
	}
}

func TestPoliciesNeedServiceConfig(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("contoso", readerKey) // no ServiceConfig
	code, body, _ := b.get("/instances/contoso/policies")
	if code != http.StatusForbidden || !strings.Contains(body, "does not grant ServiceConfig") {
		t.Errorf("reader GET policies: %d, want 403 naming ServiceConfig", code)
	}
	if strings.Contains(body, ownerKey) || strings.Contains(body, readerKey) {
		t.Errorf("a policy without ServiceConfig sees keys:\n%s", body)
	}
	tok := b.csrf("/instances/contoso")
	for path, form := range map[string]url.Values{
		"/instances/contoso/policies":            {"action": {"add"}, "keyName": {"mine"}, "rights": {"ServiceConfig"}},
		"/instances/contoso/policies/remove":     {"keyName": {"owner"}},
		"/instances/contoso/policies/regenerate": {"keyName": {"owner"}, "key": {"primary"}},
	} {
		form.Set("csrf", tok)
		if code, body, _ := b.post(path, form); code != http.StatusForbidden || !strings.Contains(body, "ServiceConfig") {
			t.Errorf("reader POST %s: %d, want 403", path, code)
		}
	}
	if calls := f.inst.callLog(); len(calls) != 0 {
		t.Errorf("a policy without ServiceConfig changed policies: %v", calls)
	}

	// The owner (ServiceConfig) sees them; regenerating the key it signed
	// in with ends its session.
	o := f.browser(t)
	o.signInTenant("contoso", ownerKey)
	code, body, _ = o.get("/instances/contoso/policies")
	if code != http.StatusOK || !strings.Contains(body, readerKey) || !strings.Contains(body, "(your session)") {
		t.Fatalf("owner GET policies: %d\n%s", code, body)
	}
	tok = csrfRE.FindStringSubmatch(body)[1]
	code, _, h := o.post("/instances/contoso/policies/regenerate", url.Values{"csrf": {tok}, "keyName": {"owner"}, "key": {"primary"}})
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/signin") {
		t.Errorf("regenerating the session's own key: %d %s, want a redirect to sign-in", code, h.Get("Location"))
	}
	if code, _, _ := o.get("/instances/contoso"); code != http.StatusSeeOther {
		t.Errorf("after regenerating its own key the session still works: %d", code)
	}
}

// TestCSRFOnEveryPost: every POST route refuses a missing or foreign
// token and changes nothing.
func TestCSRFOnEveryPost(t *testing.T) {
	f, d := drFixture(t, nil)
	d.lost = []model.LostWrites{{Instance: "contoso", NewEpoch: 2}}
	b := f.browser(t)
	b.signInOperator()
	other := f.browser(t)
	other.signInOperator()
	foreign := other.csrf("/instances")
	posts := []string{"/signout", "/instances", "/instances/contoso/delete",
		"/instances/contoso/policies", "/instances/contoso/policies/remove", "/instances/contoso/policies/regenerate",
		"/instances/contoso/enrollments", "/instances/contoso/enrollments/disable", "/instances/contoso/enrollments/delete",
		"/instances/contoso/groups", "/instances/contoso/groups/disable", "/instances/contoso/groups/delete",
		"/instances/contoso/registrations/delete", "/instances/contoso/hubs", "/instances/contoso/hubs/remove",
		"/instances/contoso/certificates", "/instances/contoso/certificates/code", "/instances/contoso/certificates/verify",
		"/instances/contoso/certificates/delete", "/regions/failover", "/regions/fence",
		"/regions/lost-writes/contoso/2/delete"}
	form := url.Values{"name": {"x"}, "region": {"westeurope"}, "confirmName": {"contoso"}, "keyName": {"owner"}, "key": {"primary"},
		"action": {"add"}, "rights": {"ServiceConfig"}, "registrationId": {"d"}, "enrollmentGroupId": {"g"}, "id": {"d"},
		"hub": {"h"}, "connectionString": {"HostName=h;SharedAccessKeyName=k;SharedAccessKey=a2V5"}, "certName": {"c"},
		"instance": {"contoso"}, "all": {"on"}, "dealtWith": {"on"}}
	for _, p := range posts {
		for _, tok := range []string{"", foreign} {
			fm := url.Values{}
			for k, v := range form {
				fm[k] = v
			}
			if tok != "" {
				fm.Set("csrf", tok)
			}
			if code, body, _ := b.post(p, fm); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
				t.Errorf("POST %s with CSRF token %q: %d, want 403", p, tok, code)
			}
		}
	}
	if calls := append(f.inst.callLog(), f.enr.callLog()...); len(calls) != 0 || len(f.inst.created) != 0 {
		t.Errorf("POSTs without a valid token changed things: %v", calls)
	}
	if len(d.reqs) != 0 || len(d.fences) != 0 || len(d.lost) != 1 {
		t.Errorf("POSTs without a valid token failed over, fenced or deleted a report")
	}
	if code, _, _ := b.get("/instances"); code != http.StatusOK {
		t.Errorf("the session ended on a sign-out without a token: %d", code)
	}
}

func TestDeleteInstance(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInOperator()
	code, body, _ := b.get("/instances/contoso/delete")
	if code != http.StatusOK || !strings.Contains(body, "cannot be undone") || !strings.Contains(body, `id="confirmName"`) {
		t.Fatalf("confirmation page: %d\n%s", code, body)
	}
	tok := csrfRE.FindStringSubmatch(body)[1]
	if code, body, _ := b.post("/instances/contoso/delete", url.Values{"csrf": {tok}, "confirmName": {"fabrikam"}}); code != http.StatusBadRequest || !strings.Contains(body, "Type the instance&#39;s name") {
		t.Errorf("delete with the wrong name: %d, want 400", code)
	}
	if _, err := f.inst.Get(t.Context(), "contoso"); err != nil {
		t.Fatalf("contoso deleted without confirmation")
	}
	code, _, h := b.post("/instances/contoso/delete", url.Values{"csrf": {tok}, "confirmName": {"contoso"}})
	if code != http.StatusSeeOther || h.Get("Location") != "/instances" {
		t.Errorf("delete: %d %s", code, h.Get("Location"))
	}
	if _, err := f.inst.Get(t.Context(), "contoso"); err == nil {
		t.Errorf("contoso still exists")
	}
	_, body, _ = b.get("/instances")
	if !strings.Contains(body, "Instance contoso deleted.") {
		t.Errorf("no message after the deletion")
	}

	// A tenant, even with every right, does not delete instances (the CLI
	// needs the operator token).
	tb := f.browser(t)
	tb.signInTenant("fabrikam", "ZmFicmlrYW0ta2V5")
	if code, _, _ := tb.get("/instances/fabrikam/delete"); code != http.StatusForbidden {
		t.Errorf("tenant GET delete: %d, want 403", code)
	}
	if code, _, _ := tb.post("/instances/fabrikam/delete", url.Values{"csrf": {tb.csrf("/instances/fabrikam")}, "confirmName": {"fabrikam"}}); code != http.StatusForbidden {
		t.Errorf("tenant POST delete: %d, want 403", code)
	}
	if _, err := f.inst.Get(t.Context(), "fabrikam"); err != nil {
		t.Errorf("a tenant deleted fabrikam")
	}
}

const testPEM = "-----BEGIN CERTIFICATE-----\nMIIBdevice\n-----END CERTIFICATE-----\n"

func TestEnrollmentAttestations(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("contoso", ownerKey)
	tok := b.csrf("/instances/contoso/enrollments")

	// X.509 with an uploaded certificate, and the shared settings.
	code, body, _ := b.postMultipart("/instances/contoso/enrollments", url.Values{"csrf": {tok}, "registrationId": {"x509-dev"},
		"attestation": {"x509"}, "iotHubs": {"a.example, b.example"}, "allocationPolicy": {"static"},
		"initialTwin": {`{"tags":{"floor":3}}`}, "edge": {"on"}, "disabled": {"on"}}, map[string]string{"certFile": testPEM})
	if code != http.StatusSeeOther {
		t.Fatalf("X.509 enrollment: %d\n%s", code, body)
	}
	e := f.enr.enr["contoso/x509-dev"]
	if e == nil || e.Attestation.Type != model.AttestationX509 || e.Attestation.X509.ClientCertificates.Primary.Certificate != testPEM {
		t.Fatalf("X.509 enrollment stored as %+v", e)
	}
	if !slices.Equal(e.IoTHubs, []string{"a.example", "b.example"}) || e.AllocationPolicy != "static" ||
		e.Capabilities == nil || !e.Capabilities.IoTEdge || e.ProvisioningStatus != model.StatusDisabled ||
		e.InitialTwin == nil || string(e.InitialTwin.Tags) != `{"floor":3}` {
		t.Errorf("shared settings not stored: %+v", e.EnrollmentCommon)
	}
	// TPM.
	if code, _, _ := b.post("/instances/contoso/enrollments", url.Values{"csrf": {tok}, "registrationId": {"tpm-dev"},
		"attestation": {"tpm"}, "endorsementKey": {"AToAAQ=="}}); code != http.StatusSeeOther {
		t.Errorf("TPM enrollment: %d", code)
	}
	if e := f.enr.enr["contoso/tpm-dev"]; e == nil || e.Attestation.TPM == nil || e.Attestation.TPM.EndorsementKey != "AToAAQ==" {
		t.Errorf("TPM enrollment stored as %+v", e)
	}
	// Mistakes are explained.
	for form, want := range map[*url.Values]string{
		{"registrationId": {"a"}, "attestation": {"x509"}}:           "Upload the certificate",
		{"registrationId": {"b"}, "attestation": {"tpm"}}:            "endorsement key",
		{"registrationId": {"c"}, "initialTwin": {`{"tags":`}}:       "The initial twin must be JSON",
		{"registrationId": {"d"}, "initialTwin": {`{"desired":{}}`}}: "The initial twin must be JSON",
		{"registrationId": {"e"}, "attestation": {"nonsense"}}:       "Choose symmetric key",
	} {
		form.Set("csrf", tok)
		if code, body, _ := b.post("/instances/contoso/enrollments", *form); code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("enrollment form %v: %d, want 400 with %q", *form, code, want)
		}
	}

	// Groups: a signing certificate, and a CA reference.
	if code, body, _ := b.postMultipart("/instances/contoso/groups", url.Values{"csrf": {tok}, "enrollmentGroupId": {"signed"},
		"attestation": {"x509"}}, map[string]string{"certFile": testPEM}); code != http.StatusSeeOther {
		t.Fatalf("X.509 group: %d\n%s", code, body)
	}
	if g := f.enr.grp["contoso/signed"]; g == nil || g.Attestation.X509.SigningCertificates.Primary.Certificate != testPEM {
		t.Errorf("X.509 group stored as %+v", g)
	}
	if code, _, _ := b.post("/instances/contoso/groups", url.Values{"csrf": {tok}, "enrollmentGroupId": {"byca"},
		"attestation": {"caRef"}, "caRef": {"root"}, "secondaryCaRef": {"root2"}}); code != http.StatusSeeOther {
		t.Errorf("CA-reference group: %d", code)
	}
	if g := f.enr.grp["contoso/byca"]; g == nil || g.Attestation.X509.CAReferences.Primary != "root" || g.Attestation.X509.CAReferences.Secondary != "root2" {
		t.Errorf("CA-reference group stored as %+v", g)
	}

	// The record pages show them, and a group's registration records.
	f.enr.regs["contoso/dev-in-group"] = &model.Registration{DeviceRegistrationState: model.DeviceRegistrationState{RegistrationID: "dev-in-group", Status: "assigned", AssignedHub: "a.example"}, EnrollmentGroupID: "byca"}
	_, body, _ = b.get("/instances/contoso/enrollments/x509-dev")
	for _, want := range []string{"x509", "a.example, b.example", "static", "&#34;floor&#34;: 3"} {
		if !strings.Contains(body, want) {
			t.Errorf("enrollment page lacks %q:\n%s", want, body)
		}
	}
	_, body, _ = b.get("/instances/contoso/groups/byca")
	for _, want := range []string{"CA certificate root, secondary root2", "dev-in-group", "assigned"} {
		if !strings.Contains(body, want) {
			t.Errorf("group page lacks %q:\n%s", want, body)
		}
	}
}

func TestLostWritesAndFence(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	f, d := drFixture(t, nil)
	d.lost = []model.LostWrites{{Instance: "contoso", Region: "westeurope", OldEpoch: 1, NewEpoch: 2, NewPrimary: "northeurope",
		AckedRev: 40, DetectedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Complete: true,
		Writes: []model.LostWrite{{Key: "/opendps/i/contoso/enr/dev-lost", Rev: 41, Value: `{"registrationId":"dev-lost","x":"` + evil + `"}`},
			{Key: "/opendps/i/contoso/enr/gone", Rev: 42, Deleted: true}}}}
	b := f.browser(t)
	b.signInOperator()
	_, body, _ := b.get("/regions")
	for _, want := range []string{`id="lost-writes-reports"`, "1 → 2", "North Europe (northeurope)", `<td class="count">2</td>`,
		"/regions/lost-writes/contoso/2", `id="fence-form"`, `<option value="contoso">`} {
		if !strings.Contains(body, want) {
			t.Errorf("region view lacks %q", want)
		}
	}
	code, body, _ := b.get("/regions/lost-writes/contoso/2")
	if code != http.StatusOK {
		t.Fatalf("report page: %d\n%s", code, body)
	}
	for _, want := range []string{"/opendps/i/contoso/enr/dev-lost", "41", "deleted", "2 writes accepted here after revision 40"} {
		if !strings.Contains(body, want) {
			t.Errorf("report page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("a lost write's value is not escaped")
	}
	if code, _, _ := b.get("/regions/lost-writes/contoso/7"); code != http.StatusNotFound {
		t.Errorf("unknown report: %d, want 404", code)
	}
	tok := csrfRE.FindStringSubmatch(body)[1]
	if code, _, _ := b.post("/regions/lost-writes/contoso/2/delete", url.Values{"csrf": {tok}}); code != http.StatusBadRequest || len(d.lost) != 1 {
		t.Errorf("delete without 'dealt with': %d, want 400 and the report kept", code)
	}
	code, _, h := b.post("/regions/lost-writes/contoso/2/delete", url.Values{"csrf": {tok}, "dealtWith": {"on"}})
	if code != http.StatusSeeOther || len(d.lost) != 0 {
		t.Errorf("delete: %d, %d reports left", code, len(d.lost))
	}
	_, body, _ = b.get(h.Get("Location"))
	if !strings.Contains(body, "The lost-writes report of contoso at epoch 2 was deleted.") || !strings.Contains(body, "this region has lost no writes") {
		t.Errorf("region view after the deletion:\n%s", body)
	}

	// Fence one instance, then lift it.
	if code, _, _ := b.post("/regions/fence", url.Values{"csrf": {tok}}); code != http.StatusBadRequest {
		t.Errorf("fence naming nothing: %d, want 400", code)
	}
	code, _, h = b.post("/regions/fence", url.Values{"csrf": {tok}, "instance": {"contoso"}})
	_, body, _ = b.get(h.Get("Location"))
	if code != http.StatusSeeOther || !strings.Contains(body, "Fence: contoso: fenced.") {
		t.Errorf("fence: %d\n%s", code, body)
	}
	b.post("/regions/fence", url.Values{"csrf": {tok}, "instance": {"contoso"}, "undo": {"on"}})
	if len(d.fences) != 2 || d.fences[0].Undo || !d.fences[1].Undo || d.fences[1].Instances[0] != "contoso" {
		t.Errorf("fence requests %+v", d.fences)
	}

	// Operator only.
	d.lost = []model.LostWrites{{Instance: "contoso", NewEpoch: 2}}
	tb := f.browser(t)
	tb.signInTenant("contoso", ownerKey)
	ttok := tb.csrf("/instances/contoso")
	for _, p := range []string{"/regions/lost-writes/contoso/2"} {
		if code, _, _ := tb.get(p); code != http.StatusForbidden {
			t.Errorf("tenant GET %s: %d, want 403", p, code)
		}
	}
	for _, p := range []string{"/regions/lost-writes/contoso/2/delete", "/regions/fence"} {
		if code, _, _ := tb.post(p, url.Values{"csrf": {ttok}, "dealtWith": {"on"}, "instance": {"contoso"}}); code != http.StatusForbidden {
			t.Errorf("tenant POST %s: %d, want 403", p, code)
		}
	}
	if len(d.lost) != 1 || len(d.fences) != 2 {
		t.Errorf("a tenant deleted a report or fenced")
	}
}

func TestPrimaryElsewhere(t *testing.T) {
	f, _ := drFixture(t, func(c *Config) {
		c.RegionConsoles = map[string]string{"northeurope": "https://ne.example:8446/"}
	})
	v := f.inst.views["contoso"]
	v.Dir.Primary, v.Dir.Secondary, v.Dir.Role, v.Dir.Epoch = "northeurope", "westeurope", model.RoleSecondary, 2
	f.enr.fenced["contoso"] = true
	b := f.browser(t)
	b.signInTenant("contoso", ownerKey)
	for _, p := range []string{"/instances/contoso/enrollments", "/instances/contoso/groups/g1"} {
		code, body, _ := b.get(p)
		if code != http.StatusConflict {
			t.Errorf("GET %s: %d, want 409", p, code)
		}
		for _, want := range []string{"primary in <strong id=\"primary-now\">North Europe (northeurope)</strong> now (epoch 2)",
			"href=\"https://ne.example:8446" + p + "\""} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s lacks %q:\n%s", p, want, body)
			}
		}
		if strings.Contains(body, "not writable") || strings.Contains(body, "does not accept writes") {
			t.Errorf("GET %s shows the store's error", p)
		}
	}
	tok := b.csrf("/instances/contoso")
	code, body, _ := b.post("/instances/contoso/enrollments", url.Values{"csrf": {tok}, "registrationId": {"d"}})
	if code != http.StatusConflict || !strings.Contains(body, `href="https://ne.example:8446/instances/contoso"`) {
		t.Errorf("POST to an instance primary elsewhere: %d\n%s", code, body)
	}
	_, body, _ = b.get("/instances/contoso")
	if !strings.Contains(body, `id="elsewhere"`) || !strings.Contains(body, "https://ne.example:8446/instances/contoso") {
		t.Errorf("the Overview does not say where contoso is primary:\n%s", body)
	}

	// Without a console URL of the region: its name, and how to add one.
	f2, _ := drFixture(t, nil)
	v = f2.inst.views["contoso"]
	v.Dir.Primary, v.Dir.Role = "northeurope", model.RoleSecondary
	f2.enr.fenced["contoso"] = true
	b2 := f2.browser(t)
	b2.signInOperator()
	_, body, _ = b2.get("/instances/contoso/enrollments")
	if !strings.Contains(body, "Open the console of a node in North Europe (northeurope)") || strings.Contains(body, `id="primary-console"`) {
		t.Errorf("without a console URL:\n%s", body)
	}
	// Primary here but fenced (a failover under way).
	v.Dir.Primary, v.Dir.Role = "westeurope", model.RoleFenced
	_, body, _ = b2.get("/instances/contoso/enrollments")
	if !strings.Contains(body, "is <strong>fenced</strong> in West Europe (westeurope)") {
		t.Errorf("fenced here:\n%s", body)
	}
}

func TestSignInRateLimit(t *testing.T) {
	f, _ := drFixture(t, func(c *Config) { c.SignInRate, c.SignInBurst = 0.001, 3 })
	b := f.browser(t)
	for i := range 3 {
		if code, _, _ := b.signIn(url.Values{"token": {"wrong"}}); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, code)
		}
	}
	code, body, h := b.signIn(url.Values{"token": {testToken}}) // even the right token
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many sign-in attempts from your address: wait") || h.Get("Retry-After") == "" {
		t.Errorf("4th attempt: %d Retry-After %q, want 429 with the message\n%s", code, h.Get("Retry-After"), body)
	}
	if strings.Contains(h.Get("Set-Cookie"), cookieSession+"=") {
		t.Errorf("a rate-limited attempt signed in")
	}
}

func TestIPLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newIPLimiter(1, 2) // 2 at once, then 1 a second
	l.now = func() time.Time { return now }
	for i := range 2 {
		if ok, _ := l.allow("192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	ok, wait := l.allow("192.0.2.1")
	if ok || wait <= 0 || wait > time.Second {
		t.Errorf("3rd attempt: %v, wait %v; want refused, about 1 s", ok, wait)
	}
	if ok, _ := l.allow("192.0.2.2"); !ok {
		t.Errorf("another address is limited too")
	}
	// Refused attempts do not push the next one further away.
	for range 5 {
		l.allow("192.0.2.1")
	}
	now = now.Add(1100 * time.Millisecond)
	if ok, _ := l.allow("192.0.2.1"); !ok {
		t.Errorf("refused after the refill")
	}
	if l := newIPLimiter(-1, 0); l != nil {
		t.Errorf("a negative rate limits")
	}
	if ok, _ := (*ipLimiter)(nil).allow("x"); !ok {
		t.Errorf("no limiter refuses")
	}
}

func TestEscapingNewPages(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	f := newFixture(t)
	f.inst.views["contoso"].Instance.AuthorizationPolicies = append(f.inst.views["contoso"].Instance.AuthorizationPolicies,
		model.AccessPolicy{KeyName: evil, PrimaryKey: "a2V5", Rights: "EnrollmentRead"})
	f.enr.grp["contoso/"+evil] = &model.EnrollmentGroup{EnrollmentGroupID: evil, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{CAReferences: &model.X509CAReferences{Primary: evil}}},
		IoTHubs:     []string{evil}, InitialTwin: &model.InitialTwin{Tags: []byte(`{"t":"` + strings.ReplaceAll(evil, `"`, `\"`) + `"}`)}}}
	b := f.browser(t)
	b.signInOperator()
	for _, p := range []string{"/instances/contoso/policies", "/instances/contoso/groups", "/instances/contoso/groups/" + url.PathEscape(evil)} {
		code, body, _ := b.get(p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, code, body)
		}
		if strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("GET %s: not escaped", p)
		}
	}
}

func TestDeriveDeviceKey(t *testing.T) {
	f := newFixture(t)
	const groupKey = "Z3JvdXAta2V5LWZvci10ZXN0cy0xMjM0NTY3ODkwMTI="
	f.enr.grp["contoso/symg"] = &model.EnrollmentGroup{EnrollmentGroupID: "symg", EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey, SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: groupKey, SecondaryKey: groupKey}}}}
	want, err := sas.DeriveKey(groupKey, "dev-7")
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser(t)
	b.signInTenant("contoso", readerKey) // EnrollmentRead shows the group's keys already
	code, body, _ := b.get("/instances/contoso/groups/symg?deriveFor=dev-7")
	if code != http.StatusOK || !strings.Contains(body, `<code id="derived-key">`+want+`</code>`) {
		t.Errorf("derived key: %d, want %s\n%s", code, want, body)
	}
	if _, body, _ := b.get("/instances/contoso/groups/symg?deriveFor=" + url.QueryEscape("bad id!")); strings.Contains(body, "derived-key") ||
		!regexp.MustCompile(`<p class="error">(?i:registrationId)[^<]*</p>`).MatchString(body) {
		t.Errorf("an invalid registration id: a key was derived, or the error is not said:\n%s", body)
	}
}
