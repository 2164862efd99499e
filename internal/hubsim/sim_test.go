package hubsim

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/sas"
)

func newSim(t *testing.T, hosts ...string) (*Sim, []HubConfig) {
	t.Helper()
	var hubs []HubConfig
	for _, h := range hosts {
		hubs = append(hubs, NewHubConfig(h))
	}
	s, err := New(Config{Hubs: hubs})
	if err != nil {
		t.Fatal(err)
	}
	return s, hubs
}

func token(t *testing.T, sr, key, skn string, exp time.Time) string {
	t.Helper()
	tok, err := sas.Build(sr, key, skn, exp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// req is one raw request to a Sim.
type req struct {
	method, host, path, auth, ifMatch, body string
}

func (r req) do(s *Sim) *httptest.ResponseRecorder {
	var body *strings.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	} else {
		body = strings.NewReader("")
	}
	hr := httptest.NewRequest(r.method, "https://"+r.host+r.path, body)
	if r.auth != "" {
		hr.Header.Set("Authorization", r.auth)
	}
	if r.ifMatch != "" {
		hr.Header.Set("If-Match", r.ifMatch)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, hr)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	code, _, _ := strings.Cut(strings.TrimPrefix(b.Message, "ErrorCode:"), ";")
	if !strings.HasPrefix(b.Message, "ErrorCode:") || b.ExceptionMessage == "" || w.Header().Get(headerErrorCode) != code {
		t.Errorf("error body %q (header %q) is not in IoT Hub's shape", w.Body.String(), w.Header().Get(headerErrorCode))
	}
	return code
}

func TestAuthorize(t *testing.T) {
	s, hubs := newSim(t, "hub1.localhost")
	h := hubs[0]
	later := time.Now().Add(time.Hour)
	other := NewHubConfig("x")
	tests := []struct {
		name string
		auth string
		want int
	}{
		{"host", token(t, "hub1.localhost", h.Key, "iothubowner", later), 404},
		{"host and port", token(t, "hub1.localhost:8443", h.Key, "iothubowner", later), 404},
		{"upper case", token(t, "HUB1.LocalHost", h.Key, "iothubowner", later), 404},
		{"encoded", token(t, "hub1.localhost%3A8443", h.Key, "iothubowner", later), 404},
		{"path under host", token(t, "hub1.localhost/devices/d1", h.Key, "iothubowner", later), 404},
		{"policy case", token(t, "hub1.localhost", h.Key, "IoTHubOwner", later), 404},
		{"other host", token(t, "hub2.localhost", h.Key, "iothubowner", later), 401},
		{"host prefix", token(t, "hub1.localhost.evil", h.Key, "iothubowner", later), 401},
		{"other policy", token(t, "hub1.localhost", h.Key, "service", later), 401},
		{"no policy", token(t, "hub1.localhost", h.Key, "", later), 401},
		{"wrong key", token(t, "hub1.localhost", other.Key, "iothubowner", later), 401},
		{"expired", token(t, "hub1.localhost", h.Key, "iothubowner", time.Now().Add(-time.Hour)), 401},
		{"missing", "", 401},
		{"garbage", "Bearer abc", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := req{method: "GET", host: "hub1.localhost:8443", path: "/devices/nobody", auth: tt.auth}.do(s)
			if w.Code != tt.want {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if want := map[int]string{401: codeUnauthorized, 404: codeDeviceNotFound}[tt.want]; errorCode(t, w) != want {
				t.Errorf("code = %q, want %q", errorCode(t, w), want)
			}
		})
	}
}

func TestRoutingAndFaults(t *testing.T) {
	s, hubs := newSim(t, "hub1.localhost", "hub2.localhost")
	tok1 := token(t, "hub1.localhost", hubs[0].Key, "iothubowner", time.Now().Add(time.Hour))
	tok2 := token(t, "hub2.localhost", hubs[1].Key, "iothubowner", time.Now().Add(time.Hour))
	if w := (req{method: "PUT", host: "HUB1.localhost.:443", path: "/devices/d1", auth: tok1, body: `{"deviceId":"d1"}`}).do(s); w.Code != 200 {
		t.Fatalf("create in hub1: %d %s", w.Code, w.Body)
	}
	if _, ok := s.Device("hub1.localhost", "d1"); !ok {
		t.Errorf("d1 not in hub1")
	}
	if _, ok := s.Device("hub2.localhost", "d1"); ok {
		t.Errorf("d1 leaked into hub2")
	}
	if w := (req{method: "GET", host: "hub2.localhost", path: "/devices/d1", auth: tok1}).do(s); w.Code != 401 {
		t.Errorf("hub1 token on hub2: %d, want 401", w.Code)
	}
	w := req{method: "GET", host: "nohub.localhost", path: "/devices/d1", auth: tok1}.do(s)
	if w.Code != 404 || errorCode(t, w) != codeIotHubNotFound {
		t.Errorf("unknown hub: %d %s, want 404 IotHubNotFound", w.Code, w.Body)
	}
	if err := s.SetDown("hub2.localhost", true); err != nil {
		t.Fatal(err)
	}
	w = req{method: "GET", host: "hub2.localhost", path: "/devices/d1", auth: tok2}.do(s)
	if w.Code != 503 || errorCode(t, w) != codeServiceUnavailable {
		t.Errorf("down hub: %d %s, want 503", w.Code, w.Body)
	}
	if w := (req{method: "GET", host: "hub1.localhost", path: "/devices/d1", auth: tok1}).do(s); w.Code != 200 {
		t.Errorf("hub1 while hub2 down: %d", w.Code)
	}
	if err := s.SetDown("nohub", true); err == nil {
		t.Errorf("SetDown of an unknown hub succeeded")
	}
}

func TestDeviceRequests(t *testing.T) {
	s, hubs := newSim(t, "hub1.localhost")
	tok := token(t, "hub1.localhost", hubs[0].Key, "iothubowner", time.Now().Add(time.Hour))
	seed := req{method: "PUT", host: "hub1.localhost", path: "/devices/seed", auth: tok, body: `{"deviceId":"seed"}`}.do(s)
	if seed.Code != 200 {
		t.Fatalf("seed: %d %s", seed.Code, seed.Body)
	}
	tests := []struct {
		name, method, path, ifMatch, body string
		want                              int
		code                              string
	}{
		{"create twice", "PUT", "/devices/seed", "", `{"deviceId":"seed"}`, 409, codeDeviceAlreadyExists},
		{"update stale", "PUT", "/devices/seed", `"bm9wZQ=="`, `{"deviceId":"seed"}`, 412, codePreconditionFailed},
		{"update missing", "PUT", "/devices/ghost", `"*"`, `{"deviceId":"ghost"}`, 404, codeDeviceNotFound},
		{"id mismatch", "PUT", "/devices/a", "", `{"deviceId":"b"}`, 400, codeArgumentInvalid},
		{"bad id", "PUT", "/devices/" + url.PathEscape("a/b"), "", `{}`, 400, codeArgumentInvalid},
		{"long id", "PUT", "/devices/" + strings.Repeat("a", 129), "", `{}`, 400, codeArgumentInvalid},
		{"no body", "PUT", "/devices/nb", "", ``, 400, codeArgumentInvalid},
		{"bad json", "PUT", "/devices/bj", "", `{`, 400, codeArgumentInvalid},
		{"list bad top", "GET", "/devices?top=0", "", ``, 400, codeArgumentInvalid},
		{"delete stale", "DELETE", "/devices/seed", `"bm9wZQ=="`, ``, 412, codePreconditionFailed},
		{"post", "POST", "/devices/seed", "", `{}`, 405, codeMethodNotAllowed},
		{"unknown resource", "GET", "/jobs", "", ``, 404, codeInvalidResource},
		{"reported by service", "PATCH", "/twins/seed", "", `{"properties":{"reported":{"a":1}}}`, 400, codeArgumentInvalid},
		{"deep twin", "PATCH", "/twins/seed", "", `{"tags":` + strings.Repeat(`{"a":`, 11) + `1` + strings.Repeat(`}`, 11) + `}`, 400, codeArgumentInvalid},
		{"twin of missing", "GET", "/twins/ghost", "", ``, 404, codeDeviceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := req{method: tt.method, host: "hub1.localhost", path: tt.path, auth: tok, ifMatch: tt.ifMatch, body: tt.body}.do(s)
			if w.Code != tt.want {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if got := errorCode(t, w); got != tt.code {
				t.Errorf("code = %q, want %q", got, tt.code)
			}
		})
	}
	var d hub.Device
	if err := json.Unmarshal(seed.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if w := (req{method: "DELETE", host: "hub1.localhost", path: "/devices/seed", auth: tok, ifMatch: `"` + d.ETag + `"`}).do(s); w.Code != 204 {
		t.Errorf("delete with etag: %d %s", w.Code, w.Body)
	}
}

func TestNodeStyleDeviceBody(t *testing.T) {
	// What azure-iothub's Registry.create sends for a new Device object.
	s, hubs := newSim(t, "hub1.localhost")
	tok := token(t, "hub1.localhost:443", hubs[0].Key, "iothubowner", time.Now().Add(time.Hour))
	body := `{"deviceId":"n1","generationId":null,"etag":null,"connectionState":"disconnected","status":"enabled","statusReason":null,
"connectionStateUpdatedTime":null,"statusUpdatedTime":null,"lastActivityTime":null,"cloudToDeviceMessageCount":"0","capabilities":{},
"authentication":{"symmetricKey":{"primaryKey":null,"secondaryKey":null},"x509Thumbprint":{"primaryThumbprint":null,"secondaryThumbprint":null},"type":"sas"}}`
	w := req{method: "PUT", host: "hub1.localhost", path: "/devices/n1?api-version=2021-04-12", auth: tok, body: body}.do(s)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("create: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	d, _ := s.Device("hub1.localhost", "n1")
	if d.Auth.Type != hub.AuthSAS || len(d.Auth.SymmetricKey.PrimaryKey) != 44 || d.Auth.SymmetricKey.SecondaryKey == d.Auth.SymmetricKey.PrimaryKey {
		t.Errorf("stored auth = %+v %+v", d.Auth, d.Auth.SymmetricKey)
	}
}

func TestMergePatch(t *testing.T) {
	tests := []struct {
		name       string
		dst, patch string
		want       string
	}{
		{"add", `{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		{"delete", `{"a":1,"b":2}`, `{"a":null}`, `{"b":2}`},
		{"delete all", `{"a":1}`, `{"a":null}`, `null`},
		{"nested", `{"a":{"x":1,"y":2}}`, `{"a":{"y":null,"z":3}}`, `{"a":{"x":1,"z":3}}`},
		{"object replaces scalar", `{"a":1}`, `{"a":{"b":null,"c":1}}`, `{"a":{"c":1}}`},
		{"empty object stays", `{}`, `{"a":{}}`, `{"a":{}}`},
		{"array replaces", `{"a":[1,2]}`, `{"a":[3]}`, `{"a":[3]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst, patch, want map[string]any
			for _, p := range []struct {
				s string
				m *map[string]any
			}{{tt.dst, &dst}, {tt.patch, &patch}, {tt.want, &want}} {
				if err := json.Unmarshal([]byte(p.s), p.m); err != nil {
					t.Fatal(err)
				}
			}
			before := fmt.Sprint(dst)
			if got := mergePatch(dst, patch); !reflect.DeepEqual(got, want) {
				t.Errorf("mergePatch = %v, want %v", got, want)
			}
			if fmt.Sprint(dst) != before {
				t.Errorf("mergePatch modified its input: %v, was %s", dst, before)
			}
		})
	}
}

func TestConcurrentWrites(t *testing.T) {
	s, hubs := newSim(t, "hub1.localhost")
	tok := token(t, "hub1.localhost", hubs[0].Key, "iothubowner", time.Now().Add(time.Hour))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			id := fmt.Sprintf("c%02d", i)
			req{method: "PUT", host: "hub1.localhost", path: "/devices/" + id, auth: tok, body: `{}`}.do(s)
			req{method: "PATCH", host: "hub1.localhost", path: "/twins/" + id, auth: tok, body: `{"tags":{"i":1}}`}.do(s)
			req{method: "PATCH", host: "hub1.localhost", path: "/twins/c00", auth: tok, body: `{"properties":{"desired":{"k":1}}}`}.do(s)
		})
	}
	wg.Wait()
	devs := s.Devices("hub1.localhost")
	if len(devs) != 16 {
		t.Fatalf("got %d devices, want 16", len(devs))
	}
	etags := map[string]bool{}
	for _, d := range devs {
		if etags[d.ETag] {
			t.Errorf("etag %q repeated", d.ETag)
		}
		etags[d.ETag] = true
	}
}
