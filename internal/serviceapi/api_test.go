package serviceapi

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

func TestEnrollmentCRUD(t *testing.T) {
	e := newEnv(t)
	w := e.do(req{method: "PUT", path: "/enrollments/Dev-1", body: symBody("dev-1")})
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	created := decodeAs[model.IndividualEnrollment](t, w)
	if created.Attestation.SymmetricKey == nil || created.Attestation.SymmetricKey.PrimaryKey == "" || created.Etag == "" {
		t.Fatalf("PUT answer = %s", w.Body)
	}
	// GET keeps keys and carries the registration state once registered.
	e.putRegistration("dev-1", "")
	got := decodeAs[model.IndividualEnrollment](t, e.do(req{method: "GET", path: "/enrollments/DEV-1"}))
	if *got.Attestation.SymmetricKey != *created.Attestation.SymmetricKey || got.RegistrationState == nil || got.RegistrationState.AssignedHub != enrollmenttest.Hub1 {
		t.Errorf("GET = %+v", got)
	}
	att := decodeAs[model.AttestationMechanism](t, e.do(req{method: "POST", path: "/enrollments/dev-1/attestationmechanism"}))
	if att.SymmetricKey == nil || att.SymmetricKey.PrimaryKey != created.Attestation.SymmetricKey.PrimaryKey {
		t.Errorf("attestationmechanism = %+v", att)
	}
	// If-Match: stale → 412, current → 200, on a missing record → 412.
	upd := symBody("dev-1")
	upd["provisioningStatus"] = "disabled"
	wantError(t, e.do(req{method: "PUT", path: "/enrollments/dev-1", body: upd, hdr: map[string]string{"If-Match": `"stale"`}}), 412)
	w = e.do(req{method: "PUT", path: "/enrollments/dev-1", body: upd, hdr: map[string]string{"If-Match": created.Etag}})
	if w.Code != 200 || decodeAs[model.IndividualEnrollment](t, w).ProvisioningStatus != "disabled" {
		t.Fatalf("PUT with current etag: %d %s", w.Code, w.Body)
	}
	wantError(t, e.do(req{method: "PUT", path: "/enrollments/nope", body: symBody("nope"), hdr: map[string]string{"If-Match": "*"}}), 412)
	wantError(t, e.do(req{method: "DELETE", path: "/enrollments/dev-1", hdr: map[string]string{"If-Match": created.Etag}}), 412)
	if w := e.do(req{method: "DELETE", path: "/enrollments/dev-1", hdr: map[string]string{"If-Match": "*"}}); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	b := wantError(t, e.do(req{method: "GET", path: "/enrollments/dev-1"}), 404)
	if b.ErrorCode != apierr.CodeEnrollmentNotFound {
		t.Errorf("errorCode = %d, want %d", b.ErrorCode, apierr.CodeEnrollmentNotFound)
	}
	wantError(t, e.do(req{method: "DELETE", path: "/enrollments/dev-1"}), 404)
	wantError(t, e.do(req{method: "POST", path: "/enrollments/dev-1/attestationmechanism"}), 404)
}

func TestX509Responses(t *testing.T) {
	e := newEnv(t)
	ca, _ := pki.NewCA("x509-dev-1")
	body := map[string]any{"registrationId": "x509-dev-1", "attestation": map[string]any{"type": "x509",
		"x509": map[string]any{"clientCertificates": map[string]any{"primary": map[string]any{"certificate": string(ca.CertPEM)}}}}}
	w := e.do(req{method: "PUT", path: "/enrollments/x509-dev-1", body: body})
	if w.Code != 200 {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	got := decodeAs[model.IndividualEnrollment](t, w)
	p := got.Attestation.X509.ClientCertificates.Primary
	if p.Certificate != "" || p.Info == nil || p.Info.SHA1Thumbprint != pki.SHA1Thumbprint(ca.Cert) {
		t.Errorf("PUT answer primary = %+v", p)
	}
	att := decodeAs[model.AttestationMechanism](t, e.do(req{method: "POST", path: "/enrollments/x509-dev-1/attestationmechanism"}))
	if !strings.Contains(att.X509.ClientCertificates.Primary.Certificate, "BEGIN CERTIFICATE") {
		t.Errorf("attestationmechanism lacks the certificate: %+v", att.X509.ClientCertificates.Primary)
	}
	// The GET answer PUT back as is (info only, with its etag) is accepted.
	w = e.do(req{method: "PUT", path: "/enrollments/x509-dev-1", body: got, hdr: map[string]string{"If-Match": got.Etag}})
	if w.Code != 200 {
		t.Errorf("round trip: %d %s", w.Code, w.Body)
	}
	group := map[string]any{"enrollmentGroupId": "ca-group", "attestation": map[string]any{"type": "x509",
		"x509": map[string]any{"caReferences": map[string]any{"primary": enrollmenttest.VerifiedCA}}}}
	if w := e.do(req{method: "PUT", path: "/enrollmentGroups/ca-group", body: group}); w.Code != 200 {
		t.Errorf("CA group: %d %s", w.Code, w.Body)
	}
}

func TestBadInputs(t *testing.T) {
	e := newEnv(t)
	if w := e.do(req{method: "PUT", path: "/enrollments/exists", body: symBody("exists")}); w.Code != 200 {
		t.Fatal(w.Body)
	}
	big := `{"registrationId":"big","attestation":{"type":"symmetricKey"},"initialTwin":{"tags":{"x":"` + strings.Repeat("a", 97<<10) + `"}}}`
	withAtt := func(id string, att string) string {
		return fmt.Sprintf(`{"registrationId":%q,"attestation":%s}`, id, att)
	}
	tests := []struct {
		name   string
		r      req
		status int
	}{
		{"malformed json", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":"m1",`}, 400},
		{"not an object", req{method: "PUT", path: "/enrollments/m1", body: `[1,2]`}, 400},
		{"empty body", req{method: "PUT", path: "/enrollments/m1", body: ""}, 400},
		{"wrong type id", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":5}`}, 400},
		{"wrong type attestation", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":"m1","attestation":"symmetricKey"}`}, 400},
		{"wrong type status", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":"m1","attestation":{"type":"symmetricKey"},"provisioningStatus":true}`}, 400},
		{"wrong type hubs", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":"m1","attestation":{"type":"symmetricKey"},"iotHubs":"h"}`}, 400},
		{"97 KB body", req{method: "PUT", path: "/enrollments/big", body: big}, 413},
		{"text/plain", req{method: "PUT", path: "/enrollments/m1", body: symBody("m1"), hdr: map[string]string{"Content-Type": "text/plain"}}, 415},
		{"id mismatch", req{method: "PUT", path: "/enrollments/m1", body: symBody("m2")}, 400},
		{"id missing", req{method: "PUT", path: "/enrollments/m1", body: `{"attestation":{"type":"symmetricKey"}}`}, 400},
		{"illegal id", req{method: "PUT", path: "/enrollments/bad%20id", body: symBody("bad id")}, 400},
		{"illegal id last char", req{method: "PUT", path: "/enrollments/bad.", body: symBody("bad.")}, 400},
		{"illegal id get", req{method: "GET", path: "/enrollments/a%2Fb"}, 400},
		{"invalid base64 key", req{method: "PUT", path: "/enrollments/m1", body: withAtt("m1", `{"type":"symmetricKey","symmetricKey":{"primaryKey":"%%%"}}`)}, 400},
		{"short key", req{method: "PUT", path: "/enrollments/m1", body: withAtt("m1", `{"type":"symmetricKey","symmetricKey":{"primaryKey":"YWJj"}}`)}, 400},
		{"unparsable cert", req{method: "PUT", path: "/enrollments/m1", body: withAtt("m1", `{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}}}}`)}, 400},
		{"tpm bad ek", req{method: "PUT", path: "/enrollments/m1", body: withAtt("m1", `{"type":"tpm","tpm":{"endorsementKey":"not base64!"}}`)}, 400},
		{"type none", req{method: "PUT", path: "/enrollments/m1", body: withAtt("m1", `{"type":"none"}`)}, 400},
		{"tpm group", req{method: "PUT", path: "/enrollmentGroups/g1", body: `{"enrollmentGroupId":"g1","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}}}`}, 400},
		{"unverified CA", req{method: "PUT", path: "/enrollmentGroups/g1", body: `{"enrollmentGroupId":"g1","attestation":{"type":"x509","x509":{"caReferences":{"primary":"` + enrollmenttest.UnverifiedCA + `"}}}}`}, 400},
		{"missing CA", req{method: "PUT", path: "/enrollmentGroups/g1", body: `{"enrollmentGroupId":"g1","attestation":{"type":"x509","x509":{"caReferences":{"primary":"nope"}}}}`}, 400},
		{"unlinked hub", req{method: "PUT", path: "/enrollments/m1", body: `{"registrationId":"m1","attestation":{"type":"symmetricKey"},"iotHubs":["evil.azure-devices.net"]}`}, 400},
		{"bulk 11 items", req{method: "POST", path: "/enrollments", body: bulkBody("create", 11)}, 400},
		{"bulk bad mode", req{method: "POST", path: "/enrollments", body: `{"mode":"merge","enrollments":[{"registrationId":"x"}]}`}, 400},
		{"bulk no items", req{method: "POST", path: "/enrollments", body: `{"mode":"create","enrollments":[]}`}, 400},
		{"bulk wrong type", req{method: "POST", path: "/enrollments", body: `{"mode":"create","enrollments":{}}`}, 400},
		{"query filter", req{method: "POST", path: "/enrollments/query", body: `{"query":"SELECT * FROM enrollments WHERE x=1"}`}, 400},
		{"query no body", req{method: "POST", path: "/enrollments/query"}, 400},
		{"query bad count", req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`, hdr: map[string]string{"x-ms-max-item-count": "lots"}}, 400},
		{"query zero count", req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`, hdr: map[string]string{"x-ms-max-item-count": "0"}}, 400},
		{"query bad continuation", req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`, hdr: map[string]string{"x-ms-continuation": "!!!"}}, 400},
		{"query foreign continuation", req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`, hdr: map[string]string{"x-ms-continuation": base64.RawURLEncoding.EncodeToString([]byte("../x"))}}, 400},
		{"unknown route", req{method: "GET", path: "/devices/x"}, 404},
		{"method", req{method: "PATCH", path: "/enrollments/exists", body: symBody("exists")}, 405},
		{"unknown instance", req{method: "PUT", path: "/enrollments/m1", body: symBody("m1"), host: "ghost.localhost"}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot()
			wantError(t, e.do(tt.r), tt.status)
			e.unchanged(before)
		})
	}
}

func bulkBody(mode string, n int) map[string]any {
	var items []any
	for i := range n {
		items = append(items, symBody(fmt.Sprintf("bulk-%02d", i)))
	}
	return map[string]any{"mode": mode, "enrollments": items}
}

func TestBulkHTTP(t *testing.T) {
	e := newEnv(t)
	body := bulkBody("create", 3)
	body["enrollments"] = append(body["enrollments"].([]any), symBody("bad id!"))
	w := e.do(req{method: "POST", path: "/enrollments/", body: body})
	res := decodeAs[model.BulkOperationResult](t, w)
	if w.Code != 200 || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].RegistrationID != "bad id!" || res.Errors[0].ErrorCode/1000 != 400 {
		t.Fatalf("bulk create: %d %s", w.Code, w.Body)
	}
	w = e.do(req{method: "POST", path: "/enrollments", body: bulkBody("create", 1)})
	if res := decodeAs[model.BulkOperationResult](t, w); len(res.Errors) != 1 || res.Errors[0].ErrorCode/1000 != 409 || res.Errors[0].ErrorStatus == "" {
		t.Errorf("bulk create existing: %s", w.Body)
	}
	w = e.do(req{method: "POST", path: "/enrollments", body: bulkBody("Delete", 3)})
	if res := decodeAs[model.BulkOperationResult](t, w); !res.IsSuccessful || res.Errors == nil {
		t.Errorf("bulk delete: %s", w.Body)
	}
	if !strings.Contains(w.Body.String(), `"errors":[]`) {
		t.Errorf("errors should be an empty array: %s", w.Body)
	}
	groups := map[string]any{"mode": "update", "enrollmentGroups": []any{
		map[string]any{"enrollmentGroupId": "g1", "attestation": map[string]any{"type": "symmetricKey"}},
		map[string]any{"enrollmentGroupId": "g2", "attestation": map[string]any{"type": "tpm"}},
	}}
	w = e.do(req{method: "POST", path: "/enrollmentgroups", body: groups})
	res = decodeAs[model.BulkOperationResult](t, w)
	if len(res.Errors) != 1 || res.Errors[0].EnrollmentGroupID != "g2" || res.Errors[0].RegistrationID != "" {
		t.Errorf("bulk groups: %s", w.Body)
	}
}

// queryAll pages through a query, returning the ids and the page count.
func queryAll(t *testing.T, e *env, path, idField string, size int) ([]string, int) {
	t.Helper()
	var ids []string
	cont := ""
	for pages := 1; pages < 100; pages++ {
		hdr := map[string]string{"x-ms-max-item-count": fmt.Sprint(size)}
		if cont != "" {
			hdr["x-ms-continuation"] = cont
		}
		w := e.do(req{method: "POST", path: path, body: `{"query":"SELECT *  FROM enrollments"}`, hdr: hdr})
		if w.Code != 200 || w.Header().Get("x-ms-item-type") == "" {
			t.Fatalf("query page %d: %d %v %s", pages, w.Code, w.Header(), w.Body)
		}
		for _, item := range decodeAs[[]map[string]any](t, w) {
			ids = append(ids, item[idField].(string))
		}
		vals, more := w.Header()["X-Ms-Continuation"]
		if !more {
			return ids, pages
		}
		if cont = vals[0]; cont == "" {
			t.Fatal("empty continuation header")
		}
	}
	t.Fatal("query never ended")
	return nil, 0
}

func TestQueryPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		w := e.do(req{method: "POST", path: "/enrollments", body: bulkBody("create", 10)})
		if i == 0 && w.Code != 200 {
			t.Fatal(w.Body)
		}
		body := bulkBody("create", 10)
		for j, it := range body["enrollments"].([]any) {
			it.(map[string]any)["registrationId"] = fmt.Sprintf("p%d-%02d", i, j)
		}
		e.do(req{method: "POST", path: "/enrollments", body: body})
	}
	ids, pages := queryAll(t, e, "/enrollments/query", "registrationId", 7)
	if len(ids) != 40 || pages != 6 {
		t.Errorf("enrollments: %d ids in %d pages, want 40 in 6", len(ids), pages)
	}
	if ids, pages = queryAll(t, e, "/enrollments/query", "registrationId", 40); len(ids) != 40 || pages != 1 {
		t.Errorf("one exact page: %d ids in %d pages", len(ids), pages)
	}
	w := e.do(req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`})
	if n := len(decodeAs[[]any](t, w)); n != 40 || w.Header().Get("x-ms-item-type") != "Enrollment" {
		t.Errorf("default page: %d items, item type %q", n, w.Header().Get("x-ms-item-type"))
	}
	for i := range 5 {
		e.putRegistration(fmt.Sprintf("r-%d", i), "grp-1")
	}
	e.putRegistration("r-other", "grp-2")
	ids, pages = queryAll(t, e, "/registrations/GRP-1/query", "registrationId", 2)
	if len(ids) != 5 || pages != 3 {
		t.Errorf("registrations: %v in %d pages", ids, pages)
	}
	w = e.do(req{method: "POST", path: "/registrations/grp-2/query"})
	if w.Code != 200 || w.Header().Get("x-ms-item-type") != "DeviceRegistration" || len(decodeAs[[]any](t, w)) != 1 {
		t.Errorf("registration query without body: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = e.do(req{method: "POST", path: "/enrollmentGroups/query", body: `{"query":"*"}`})
	if w.Code != 200 || w.Body.String() != "[]\n" || w.Header().Get("x-ms-item-type") != "EnrollmentGroup" {
		t.Errorf("empty group query: %d %q", w.Code, w.Body)
	}
}

func TestRegistrationStates(t *testing.T) {
	e := newEnv(t)
	r := e.putRegistration("reg-1", "grp")
	got := decodeAs[map[string]any](t, e.do(req{method: "GET", path: "/registrations/REG-1"}))
	if got["registrationId"] != "reg-1" || got["assignedHub"] != enrollmenttest.Hub1 || got["etag"] != r.Etag {
		t.Errorf("GET = %v", got)
	}
	if _, leaked := got["enrollmentGroupId"]; leaked {
		t.Errorf("GET shows engine fields: %v", got)
	}
	before := e.snapshot()
	wantError(t, e.do(req{method: "DELETE", path: "/registrations/reg-1", hdr: map[string]string{"If-Match": `"old"`}}), 412)
	e.unchanged(before)
	if w := e.do(req{method: "DELETE", path: "/registrations/reg-1", hdr: map[string]string{"If-Match": r.Etag}}); w.Code != 204 {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	b := wantError(t, e.do(req{method: "GET", path: "/registrations/reg-1"}), 404)
	if b.ErrorCode != apierr.CodeRegistrationMissing {
		t.Errorf("errorCode %d", b.ErrorCode)
	}
	if n, _ := e.st.Count(t.Context(), enrollmenttest.IndexPrefix(e.in.Name)); n != 0 {
		t.Errorf("%d reggrp index entries left", n)
	}
}
