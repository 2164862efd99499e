package serviceapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
)

// FuzzParseRoute: any method and path gives a route or an *apierr.Error
// of status 400, 404 or 405, never a panic; routes round-trip their id.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/enrollments/x", "/enrollmentGroups/g/attestationmechanism", "/registrations/g/query",
		"/enrollments/", "//", "/enrollments/%zz", "/ENROLLMENTS/QUERY", "/registrations/%2F/query"} {
		f.Add("POST", s)
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt, err := parseRoute(method, path)
		if err != nil {
			var ae *apierr.Error
			if !errors.As(err, &ae) || (ae.Status != 400 && ae.Status != 404 && ae.Status != 405) {
				t.Fatalf("parseRoute(%q, %q) err = %v", method, path, err)
			}
			return
		}
		if rt.res == 0 || rt.op == 0 {
			t.Fatalf("parseRoute(%q, %q) = %+v without error", method, path, rt)
		}
		if (rt.op == opBulk || (rt.op == opQuery && rt.res != resRegistration)) != (rt.id == "") {
			t.Fatalf("parseRoute(%q, %q) = %+v: id presence", method, path, rt)
		}
	})
}

// FuzzPageParams: paging headers never panic and give sane pages.
func FuzzPageParams(f *testing.F) {
	f.Add("10", "ZGV2LTE")
	f.Add("-1", "")
	f.Add("99999999999999999999", "====")
	f.Fuzz(func(t *testing.T, count, cont string) {
		r := httptest.NewRequest("POST", "/enrollments/query", nil)
		r.Header[http.CanonicalHeaderKey(hdrMaxItemCount)] = []string{count}
		r.Header[http.CanonicalHeaderKey(hdrContinuation)] = []string{cont}
		p, err := pageParams(r)
		if err == nil && (p.size < 1 || p.size > 1000) {
			t.Fatalf("pageParams(%q, %q) size %d", count, cont, p.size)
		}
	})
}

// bodyRoutes are the routes that decode a request body.
var bodyRoutes = []struct{ method, path string }{
	{"PUT", "/enrollments/f1"}, {"PUT", "/enrollmentGroups/f1"}, {"POST", "/enrollments"},
	{"POST", "/enrollmentGroups/"}, {"POST", "/enrollments/query"}, {"POST", "/enrollmentGroups/query"},
	{"POST", "/registrations/f1/query"},
}

// FuzzRequestBodies drives the whole handler with arbitrary bodies on the
// routes that decode one: every answer is a success or a DPS-shaped 4xx,
// never a 5xx.
func FuzzRequestBodies(f *testing.F) {
	e := newEnv(f)
	seeds := []string{
		`{"registrationId":"f1","attestation":{"type":"symmetricKey"}}`,
		`{"enrollmentGroupId":"f1","attestation":{"type":"x509","x509":{"caReferences":{"primary":"verified-ca"}}}}`,
		`{"registrationId":"f1","attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":"AAAA"}}}}}`,
		`{"registrationId":"f1","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}},"initialTwin":{"tags":{"a":1}}}`,
		`{"mode":"create","enrollments":[{"registrationId":"f1","attestation":{"type":"symmetricKey"}}]}`,
		`{"mode":"delete","enrollmentGroups":[{"enrollmentGroupId":"f1"},null]}`,
		`{"query":"*"}`, `null`, `[]`, `{"registrationId":null}`, `{"attestation":{"type":7}}`,
	}
	for i := range bodyRoutes {
		for _, s := range seeds {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body string) {
		rt := bodyRoutes[int(route)%len(bodyRoutes)]
		fe := *e
		fe.t = t
		w := fe.do(req{method: rt.method, path: rt.path, body: body})
		if w.Code >= 500 {
			t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			wantError(t, w, w.Code)
		}
	})
}
