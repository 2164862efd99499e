package controlapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/pkitest"
	"github.com/opendps/opendps/pkg/dpsclient"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPolicies(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.ctl.CreateInstance(ctx, "api-policies", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	p, err := e.ctl.SetPolicy(ctx, "api-policies", "reader", "enrollmentread,REGISTRATIONSTATUSREAD", true)
	if err != nil || p.Rights != "EnrollmentRead, RegistrationStatusRead" || p.PrimaryKey == "" {
		t.Fatalf("SetPolicy = %+v, %v", p, err)
	}
	_, err = e.ctl.SetPolicy(ctx, "api-policies", "reader", "EnrollmentRead", true)
	wantAPIStatus(t, err, http.StatusPreconditionFailed)
	_, err = e.ctl.SetPolicy(ctx, "api-policies", "reader", "EnrollmentRead, Superuser", false)
	if msg := wantAPIStatus(t, err, http.StatusBadRequest); !strings.Contains(msg, "Superuser") {
		t.Errorf("message %q", msg)
	}
	r, err := e.ctl.RegenerateKey(ctx, "api-policies", "reader", "secondary")
	if err != nil || r.SecondaryKey == p.SecondaryKey || r.PrimaryKey != p.PrimaryKey {
		t.Errorf("RegenerateKey = %+v, %v", r, err)
	}
	_, err = e.ctl.RegenerateKey(ctx, "api-policies", "reader", "both")
	wantAPIStatus(t, err, http.StatusBadRequest)
	svc, _ := e.ctl.GetInstance(ctx, "api-policies")
	if n := len(svc.Properties.AuthorizationPolicies); n != 2 || svc.Properties.AuthorizationPolicies[1].PrimaryKey != "" {
		t.Errorf("GET policies = %+v", svc.Properties.AuthorizationPolicies)
	}
	if err := e.ctl.RemovePolicy(ctx, "api-policies", "provisioningserviceowner"); err != nil {
		t.Fatal(err)
	}
	wantAPIStatus(t, e.ctl.RemovePolicy(ctx, "api-policies", "reader"), http.StatusBadRequest) // the last one
	wantAPIStatus(t, e.ctl.RemovePolicy(ctx, "api-policies", "ghost"), http.StatusNotFound)
	// Policies through the ARM PUT: keys given are validated.
	st, _, b := e.raw(http.MethodPut, armPath("api-policies"), `{"location":"westeurope","properties":{"authorizationPolicies":[{"keyName":"k","rights":"ServiceConfig","primaryKey":"c2hvcnQ="}]}}`)
	wantStatus(t, st, http.StatusBadRequest, b)
}

func TestHubs(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.ctl.CreateInstance(ctx, "api-hubs", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	cs := hubCS("hub1.localhost:8443")
	h, err := e.ctl.LinkHub(ctx, "api-hubs", dpsclient.IotHub{ConnectionString: cs, AllocationWeight: 7})
	if err != nil || h.Name != "hub1.localhost:8443" || h.AllocationWeight != 7 || h.ApplyAllocationPolicy == nil || !*h.ApplyAllocationPolicy ||
		h.Location != "westeurope" || !strings.HasSuffix(h.ConnectionString, "SharedAccessKey=****") {
		t.Fatalf("LinkHub = %+v, %v", h, err)
	}
	svc, _ := e.ctl.GetInstance(ctx, "api-hubs")
	if len(svc.Properties.IotHubs) != 1 || strings.Contains(svc.Properties.IotHubs[0].ConnectionString, cs[strings.Index(cs, "SharedAccessKey=")+len("SharedAccessKey="):]) {
		t.Errorf("GET iotHubs leaks or misses the hub: %+v", svc.Properties.IotHubs)
	}
	hubPath := armPath("api-hubs", "iotHubs", "h2.localhost")
	for _, tt := range []struct {
		name, body, msg string
	}{
		{"weight 0", `{"connectionString":"` + hubCS("h2.localhost") + `","allocationWeight":0}`, "1 to 1000"},
		{"weight 1001", `{"connectionString":"` + hubCS("h2.localhost") + `","allocationWeight":1001}`, "1 to 1000"},
		{"weight type", `{"connectionString":"` + hubCS("h2.localhost") + `","allocationWeight":"heavy"}`, "allocationWeight"},
		{"bad connection string", `{"connectionString":"HostName=h2.localhost;SharedAccessKey=not*base64"}`, "base64"},
		{"other host", `{"connectionString":"` + hubCS("h3.localhost") + `"}`, "not \"h2.localhost\""},
		{"checker", `{"connectionString":"` + hubCS("bad.localhost") + `"}`, "link-time check"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := hubPath
			if tt.name == "checker" {
				path = armPath("api-hubs", "iotHubs", "bad.localhost")
			}
			st, _, b := e.raw(http.MethodPut, path, tt.body)
			if msg := wantStatus(t, st, http.StatusBadRequest, b); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q does not contain %q", msg, tt.msg)
			}
		})
	}
	// Without a connection string only the other fields change.
	st, _, b := e.raw(http.MethodPut, armPath("api-hubs", "iotHubs", "hub1.localhost:8443"), `{"allocationWeight":9}`)
	if wantStatus(t, st, http.StatusOK, b); b["allocationWeight"] != float64(9) {
		t.Errorf("weight-only update: %v", b)
	}
	st, _, b = e.raw(http.MethodPut, armPath("api-hubs", "iotHubs", "unknown.localhost"), `{"allocationWeight":9}`)
	wantStatus(t, st, http.StatusBadRequest, b)
	// The round trip of a GET (masked keys) through PUT keeps the hub.
	st, _, got := e.raw(http.MethodGet, armPath("api-hubs"), "")
	wantStatus(t, st, http.StatusOK, got)
	st, _, again := e.raw(http.MethodPut, armPath("api-hubs"), mustJSON(t, got))
	wantStatus(t, st, http.StatusOK, again)
	if again["etag"] != got["etag"] {
		t.Error("masked round trip changed the instance")
	}
	if err := e.ctl.UnlinkHub(ctx, "api-hubs", "HUB1.localhost:8443"); err != nil {
		t.Fatal(err)
	}
	wantAPIStatus(t, e.ctl.UnlinkHub(ctx, "api-hubs", "hub1.localhost:8443"), http.StatusNotFound)
	if hubs, err := e.ctl.ListHubs(ctx, "api-hubs"); err != nil || len(hubs) != 0 {
		t.Errorf("ListHubs = %+v, %v", hubs, err)
	}
}

func TestCertificateProofOfPossession(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	if _, err := e.ctl.CreateInstance(ctx, "api-certs", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	ca := pkitest.NewCA(t, "API Root")
	// The ARM SDK sends base64 of the file's bytes, here a PEM file.
	c, err := e.ctl.PutCertificate(ctx, "api-certs", "root", base64.StdEncoding.EncodeToString([]byte(ca.PEM)), false, "")
	if err != nil || c.Properties.IsVerified || c.Properties.Subject != "CN=API Root" || c.Type != "Microsoft.Devices/ProvisioningServices/Certificates" ||
		!strings.HasSuffix(c.Properties.Expiry, " GMT") || c.ID != armPath("api-certs", "certificates", "root") {
		t.Fatalf("PutCertificate = %+v, %v", c, err)
	}
	_, err = e.ctl.PutCertificate(ctx, "api-certs", "root", ca.PEM, true, "")
	wantAPIStatus(t, err, http.StatusBadRequest) // replacing needs If-Match
	_, err = e.ctl.GenerateVerificationCode(ctx, "api-certs", "root", `"stale"`)
	wantAPIStatus(t, err, http.StatusPreconditionFailed)
	g, err := e.ctl.GenerateVerificationCode(ctx, "api-certs", "root", c.Etag)
	if err != nil || g.Properties.VerificationCode == "" {
		t.Fatalf("GenerateVerificationCode = %+v, %v", g, err)
	}
	// Proofs go as base64 DER.
	proof := func(ca *pkitest.CA, cn string) string { return base64.StdEncoding.EncodeToString(ca.IssueDER(t, cn)) }
	_, err = e.ctl.VerifyCertificate(ctx, "api-certs", "root", g.Etag, proof(ca, "wrong code"))
	wantAPIStatus(t, err, http.StatusBadRequest)
	_, err = e.ctl.VerifyCertificate(ctx, "api-certs", "root", g.Etag, proof(pkitest.NewCA(t, "Other"), g.Properties.VerificationCode))
	wantAPIStatus(t, err, http.StatusBadRequest)
	v, err := e.ctl.VerifyCertificate(ctx, "api-certs", "root", g.Etag, proof(ca, g.Properties.VerificationCode))
	if err != nil || !v.Properties.IsVerified || v.Properties.VerificationCode != "" {
		t.Fatalf("VerifyCertificate = %+v, %v", v, err)
	}
	list, err := e.ctl.ListCertificates(ctx, "api-certs")
	if err != nil || len(list) != 1 || !list[0].Properties.IsVerified {
		t.Errorf("ListCertificates = %+v, %v", list, err)
	}
	st, _, b := e.raw(http.MethodGet, armPath("api-certs", "certificates", "root"), "", "If-Match", `"stale"`)
	wantStatus(t, st, http.StatusPreconditionFailed, b)
	wantAPIStatus(t, e.ctl.DeleteCertificate(ctx, "api-certs", "root", ""), http.StatusBadRequest)
	wantAPIStatus(t, e.ctl.DeleteCertificate(ctx, "api-certs", "root", c.Etag), http.StatusPreconditionFailed)
	if err := e.ctl.DeleteCertificate(ctx, "api-certs", "root", v.Etag); err != nil {
		t.Fatal(err)
	}
	_, err = e.ctl.GetCertificate(ctx, "api-certs", "root")
	wantAPIStatus(t, err, http.StatusNotFound)
	// Self-attested upload, old-style top-level body.
	st, _, b = e.raw(http.MethodPut, armPath("api-certs", "certificates", "self"), mustJSON(t, map[string]any{"certificate": ca.PEM, "isVerified": true}))
	wantStatus(t, st, http.StatusOK, b)
	if props, _ := b["properties"].(map[string]any); props["isVerified"] != true {
		t.Errorf("self-attested upload: %v", b)
	}
}
