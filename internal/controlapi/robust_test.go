package controlapi

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestBodyErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := e.ctl.CreateInstance(context.Background(), "api-bodies", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	big := `{"location":"westeurope","tags":{"a":"` + strings.Repeat("x", 70<<10) + `"}}`
	for _, tt := range []struct {
		name, method, path, body, ctype string
		status                          int
	}{
		{"malformed", http.MethodPut, armPath("api-bodies"), `{"location":`, "", http.StatusBadRequest},
		{"not an object", http.MethodPut, armPath("api-bodies"), `[1,2]`, "", http.StatusBadRequest},
		{"empty", http.MethodPut, armPath("api-bodies"), ``, "", http.StatusBadRequest},
		{"location type", http.MethodPut, armPath("api-bodies"), `{"location":5}`, "", http.StatusBadRequest},
		{"residency type", http.MethodPut, armPath("api-bodies"), `{"properties":{"enableDataResidency":"yes"}}`, "", http.StatusBadRequest},
		{"tags type", http.MethodPatch, armPath("api-bodies"), `{"tags":["a"]}`, "", http.StatusBadRequest},
		{"hubs type", http.MethodPut, armPath("api-bodies"), `{"properties":{"iotHubs":{}}}`, "", http.StatusBadRequest},
		{"isVerified type", http.MethodPut, armPath("api-bodies", "certificates", "c"), `{"properties":{"certificate":"x","isVerified":"yes"}}`, "", http.StatusBadRequest},
		{"rights type", http.MethodPut, armPath("api-bodies", "policies", "p"), `{"rights":["EnrollmentRead"]}`, "", http.StatusBadRequest},
		{"key type", http.MethodPost, armPath("api-bodies", "keys", "provisioningserviceowner", "regenerate"), `{"key":1}`, "", http.StatusBadRequest},
		{"too large", http.MethodPut, armPath("api-bodies"), big, "", http.StatusRequestEntityTooLarge},
		{"content type", http.MethodPut, armPath("api-bodies"), `{}`, "text/plain", http.StatusUnsupportedMediaType},
		{"method", http.MethodPost, armPath("api-bodies"), ``, "", http.StatusMethodNotAllowed},
		{"unknown instance", http.MethodPost, armPath("api-nobody", "listkeys"), ``, "", http.StatusNotFound},
		{"name check body", http.MethodPost, "/subscriptions/s/providers/Microsoft.Devices/checkProvisioningServiceNameAvailability", `{}`, "", http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _, b := e.raw(tt.method, tt.path, tt.body, "Content-Type", tt.ctype)
			wantStatus(t, st, tt.status, b)
		})
	}
}

// TestGarbage throws random paths, methods, headers and bodies at the
// handler: every answer must be a client error or success, never a 5xx or
// a dropped connection.
func TestGarbage(t *testing.T) {
	e := newEnv(t)
	if _, err := e.ctl.CreateInstance(context.Background(), "api-garbage", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	segs := []string{"iotHubs", "certificates", "keys", "listkeys", "policies", "verify", "generateVerificationCode",
		"regenerate", "x", "%00", "%2F", "..", "stats", "skus", "bad.localhost", strings.Repeat("a", 300)}
	bodies := []string{"", "{", "null", "[]", `{"properties":null}`, `{"properties":{"iotHubs":[null,{}]}}`,
		`{"certificate":"` + strings.Repeat("A", 1000) + `"}`, `{"rights":"` + strings.Repeat(",", 500) + `"}`,
		`{"location":"westeurope","properties":{"authorizationPolicies":[{}],"iotHubs":[{"connectionString":";;="}]}}`,
		`{"key":"primary"}`, "\x00\xff\xfe", `{"tags":{"":""}}`}
	methods := []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch}
	for i := range 400 {
		path := armPath("api-garbage")
		if i%7 == 0 {
			path = armPath(segs[r.IntN(len(segs))])
		}
		for n := r.IntN(4); n > 0; n-- {
			path += "/" + segs[r.IntN(len(segs))]
		}
		hdr := []string{"If-Match", []string{"", "*", `"x"`, "W/\"y\""}[r.IntN(4)]}
		st, _, b := e.raw(methods[r.IntN(len(methods))], path, bodies[r.IntN(len(bodies))], hdr...)
		if st >= 500 {
			t.Fatalf("%s: status %d body %v", path, st, b)
		}
	}
}

func FuzzCreateInstanceBody(f *testing.F) {
	for _, s := range []string{
		`{"location":"westeurope"}`,
		`{"location":"brazilsouth","sku":{"name":"S1"},"properties":{"enableDataResidency":true,"allocationPolicy":"Hashed"}}`,
		`{"properties":{"iotHubs":[{"connectionString":"HostName=h;SharedAccessKey=****","allocationWeight":3}],"authorizationPolicies":[{"keyName":"a","rights":"EnrollmentRead"}]}}`,
		`{"sku":{"name":"S9"}}`, `{"properties":{"iotHubs":null}}`, `[`, `{"tags":{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := decodeInstanceBody("sub", "rg", "fuzz-name", data)
		if err != nil {
			if toAPIError(err).Status != http.StatusBadRequest {
				t.Errorf("decode error %v is not a 400", err)
			}
			return
		}
		if spec.Name != "fuzz-name" || spec.SubscriptionID != "sub" {
			t.Errorf("spec = %+v", spec)
		}
	})
}

func FuzzCertificateBody(f *testing.F) {
	f.Add([]byte(`{"properties":{"certificate":"MIIB","isVerified":true}}`))
	f.Add([]byte(`{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b certificateBody
		if err := apierr.DecodeBytes(data, &b); err != nil {
			return
		}
		s := b.spec("")
		instance.ParseCertificateText(s.Certificate)
	})
}
