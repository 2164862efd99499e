package httpfront_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
)

// reset clears the calls and sets the fake's answer from mode, so one
// handler serves a whole fuzz run.
func (f *fakeEngine) reset(mode uint8) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.err, f.panic = nil, nil, false
	f.state = assigned().Status.RegistrationState
	switch mode % 6 {
	case 0:
		f.result = assigning(int(mode / 6))
	case 1:
		f.result = assigned()
	case 2:
		f.result = withStatus(assigning(0), "unassigned")
	case 3:
		f.err = apierr.New(apierr.CodeUnauthorized, "Unauthorized")
	case 4:
		f.err = errors.New("boom")
	case 5:
		f.panic = true
	}
}

// fuzzRequest builds a request from raw parts; a target that does not
// parse as a request URI becomes a raw path.
func fuzzRequest(method, target string, body []byte, ct string) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		u = &url.URL{Path: target}
	}
	r := &http.Request{Method: method, URL: u, Header: http.Header{}, Host: "dps.example.net",
		RemoteAddr: "192.0.2.1:1234", Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

// checkAnswer asserts the invariants of every answer: a status a client
// understands, the JSON content type, a JSON object, the DPS error shape
// for errors, and never status "unassigned".
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code < 200 || rec.Code > 599 {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != jsonCT {
		t.Fatalf("Content-Type %q", ct)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if string(m["status"]) == `"unassigned"` {
		t.Fatalf("unassigned sent: %s", rec.Body)
	}
	if v := rec.Header().Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("Retry-After %q is not a positive integer", v)
		}
	}
	if rec.Code < 400 {
		return
	}
	var b apierr.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.ErrorCode/1000 != rec.Code || b.TrackingID == "" {
		t.Fatalf("status %d with error body %s (%v)", rec.Code, rec.Body, err)
	}
	if rec.Header().Get("x-ms-error-code") != strconv.Itoa(b.ErrorCode) {
		t.Fatalf("x-ms-error-code %q, errorCode %d", rec.Header().Get("x-ms-error-code"), b.ErrorCode)
	}
}

// checkCalls asserts that the engine only ever sees validated ids.
func checkCalls(t *testing.T, calls []call) {
	t.Helper()
	for _, c := range calls {
		if !strings.HasPrefix(strings.ToLower(c.req.IDScope), "0ne") || len(c.req.IDScope) > 35 {
			t.Fatalf("engine got scope %q", c.req.IDScope)
		}
		if id := c.req.RegistrationID; id == "" || len(id) > 128 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:") != "" {
			t.Fatalf("engine got registration id %q", id)
		}
		if b := c.req.Body; b != nil && b.RegistrationID != "" && !strings.EqualFold(b.RegistrationID, c.req.RegistrationID) {
			t.Fatalf("engine got body id %q for path id %q", b.RegistrationID, c.req.RegistrationID)
		}
	}
}

func FuzzRoute(f *testing.F) {
	seeds := []struct {
		method, target, body, ct string
	}{
		{"PUT", regPath + apiQuery, `{"registrationId":"dev1"}`, jsonCT},
		{"GET", opPath + apiQuery, `{}`, jsonCT},
		{"POST", statusPath + apiQuery, ``, ``},
		{"PUT", "/%30ne00000001/registrations/dev%3A1/register?api-version=2021-06-01&forceRegistration=true", `{"payload":null}`, "application/json"},
		{"DELETE", regPath, ``, ``},
		{"GET", "/", ``, ``},
		{"PUT", "/0ne/registrations/dev1/register?api-version=bad", `[`, "text/plain"},
		{"GET", "/0ne00000001/registrations/dev1/operations/a%2Fb", ``, ``},
		{"", "//a//b", "\x00", ";"},
	}
	for i, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body), s.ct, uint8(i))
	}
	fe := &fakeEngine{}
	h := newHandler(f, fe, 1024)
	f.Fuzz(func(t *testing.T, method, target string, body []byte, ct string, mode uint8) {
		fe.reset(mode)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, fuzzRequest(method, target, body, ct))
		checkAnswer(t, rec)
		checkCalls(t, fe.Calls())
	})
}

func FuzzRegisterBody(f *testing.F) {
	for _, s := range []string{
		`{"registrationId":"dev1"}`, `{"registrationId":"dev1","payload":{"modelId":"dtmi:x;1"}}`,
		`{"payload": null, "registrationId": "dev1"}`, `{}`, ``, `null`, `[]`, `{"registrationId":"DEV1"}`,
		`{"registrationId":"dev2"}`, `{"registrationId":5}`, `{"tpm":{"endorsementKey":"AA=="}}`, `{"a":` + strings.Repeat("[", 2000),
	} {
		f.Add([]byte(s), jsonCT)
	}
	f.Add([]byte(`{}`), "")
	f.Add([]byte(`{}`), "text/plain")
	fe := &fakeEngine{}
	h := newHandler(f, fe, 4096)
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		fe.reset(1)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, fuzzRequest(http.MethodPut, regPath+apiQuery, body, ct))
		checkAnswer(t, rec)
		calls := fe.Calls()
		checkCalls(t, calls)
		switch rec.Code {
		case http.StatusAccepted:
			if len(calls) != 1 {
				t.Fatalf("202 with %d engine calls", len(calls))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			if len(calls) != 0 {
				t.Fatalf("%d with an engine call", rec.Code)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
