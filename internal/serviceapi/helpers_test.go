package serviceapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/internal/store"
)

func TestMain(m *testing.M) { enrollmenttest.Main(m) }

// env is a handler over the shared store with one fresh instance.
type env struct {
	t    testing.TB
	st   *store.Store
	svc  *enrollment.Service
	h    *Handler
	in   *enrollmenttest.Instance
	host string // Host header: {instance}.localhost:8443
}

var instanceSeq int

func newEnv(t testing.TB) *env {
	t.Helper()
	st := enrollmenttest.Store(t)
	instanceSeq++
	name := fmt.Sprintf("svc%d-%d", instanceSeq, time.Now().UnixNano()%1_000_000)
	in := enrollmenttest.NewInstance(t, st, name)
	svc := enrollment.New(st)
	h, err := New(Config{Store: st, Enrollments: svc, ServiceDomain: "localhost", InstanceCacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, svc: svc, h: h, in: in, host: name + ".localhost:8443"}
}

// token returns a service SAS token for sr signed with key.
func token(t testing.TB, sr, key, policy string, ttl time.Duration) string {
	t.Helper()
	tok, err := sas.Build(sr, key, policy, time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// req is a request to build; zero fields mean owner auth, api-version
// 2021-10-01 and a JSON body.
type req struct {
	method, path string
	body         any // string, []byte or a value to marshal; nil for none
	auth         string
	noAuth       bool
	hdr          map[string]string
	noAPIVersion bool
	host         string
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body []byte
	switch b := r.body.(type) {
	case nil:
	case string:
		body = []byte(b)
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	path := r.path
	if !r.noAPIVersion {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "api-version=2021-10-01"
	}
	hr := httptest.NewRequest(r.method, "https://x"+path, bytes.NewReader(body))
	hr.Host = e.host
	if r.host != "" {
		hr.Host = r.host
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	switch {
	case r.noAuth:
	case r.auth != "":
		hr.Header.Set("Authorization", r.auth)
	default:
		hr.Header.Set("Authorization", token(e.t, e.host, e.in.OwnerKey, model.OwnerPolicy, time.Hour))
	}
	for k, v := range r.hdr {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	return w
}

// decodeAs unmarshals a response body, failing the test on error.
func decodeAs[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("response %d body %q: %v", w.Code, w.Body.String(), err)
	}
	return v
}

// wantError checks status and the DPS error shape.
func wantError(t testing.TB, w *httptest.ResponseRecorder, status int) apierr.Body {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d; body %s", w.Code, status, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	b := decodeAs[apierr.Body](t, w)
	if b.ErrorCode/1000 != status || b.TrackingID == "" || b.Message == "" || b.TimestampUTC == "" {
		t.Errorf("error body = %+v", b)
	}
	if got := w.Header().Get("x-ms-error-code"); got != fmt.Sprint(b.ErrorCode) {
		t.Errorf("x-ms-error-code = %q, body errorCode %d", got, b.ErrorCode)
	}
	return b
}

// snapshot and unchanged check that a failed request wrote nothing.
func (e *env) snapshot() map[string]string {
	return enrollmenttest.Snapshot(e.t, e.st, e.in.Name)
}

func (e *env) unchanged(before map[string]string) {
	e.t.Helper()
	if after := e.snapshot(); !reflect.DeepEqual(before, after) {
		e.t.Errorf("the store changed: %d keys before, %d after", len(before), len(after))
	}
}

func symBody(id string) map[string]any {
	return map[string]any{"registrationId": id, "attestation": map[string]any{"type": "symmetricKey"}}
}

func (e *env) putRegistration(id, group string) *model.Registration {
	e.t.Helper()
	r, err := e.svc.PutRegistration(context.Background(), e.in.Name, &model.Registration{
		DeviceRegistrationState: model.DeviceRegistrationState{RegistrationID: id, Status: "assigned",
			AssignedHub: enrollmenttest.Hub1, DeviceID: id, Substatus: "initialAssignment"},
		EnrollmentGroupID: group})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}
