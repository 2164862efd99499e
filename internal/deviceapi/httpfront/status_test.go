package httpfront_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
)

func get(target string, body *string) req {
	return req{method: http.MethodGet, target: target, body: body}
}

func wantOpID(id string) func(*testing.T, *httptest.ResponseRecorder, call) {
	return func(t *testing.T, _ *httptest.ResponseRecorder, c call) {
		t.Helper()
		if c.opID != id || c.req.Body != nil {
			t.Errorf("engine opID = %q, Body = %+v; want %q, nil", c.opID, c.req.Body, id)
		}
	}
}

func TestOperationStatus(t *testing.T) {
	runCases(t, []tcase{{
		name: "node poll with {} body", q: req{method: http.MethodGet, target: opPath + apiQuery, body: str("{}"),
			header: map[string]string{"Authorization": testSAS}},
		wantStatus: 202, wantCall: "OperationStatus",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, c call) {
			wantOpID(testOpID)(t, rec, c)
			checkRetryAfter(t, rec, 3)
			if rec.Header().Get("Location") != "" {
				t.Errorf("Location on a poll: %q", rec.Header().Get("Location"))
			}
			st := decodeOp(t, rec)
			if st.Status != "assigning" || st.OperationID != testOpID || st.RegistrationState.RegistrationID != testRegID {
				t.Errorf("body = %s", rec.Body)
			}
			if c.req.SASToken != testSAS || c.req.IDScope != testScope || c.req.RegistrationID != testRegID {
				t.Errorf("engine request = %+v", c.req)
			}
		},
	}, {
		name: "assigning default retry-after", setup: func(f *fakeEngine) { f.result = assigning(0) },
		q: get(opPath+apiQuery, nil), wantStatus: 202, wantCall: "OperationStatus",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) { checkRetryAfter(t, rec, 2) },
	}, {
		name: "assigned", setup: func(f *fakeEngine) { f.result = assigned() },
		q: get(opPath+apiQuery, nil), wantStatus: 200, wantCall: "OperationStatus",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
			checkRetryAfter(t, rec, 0)
			st := decodeOp(t, rec)
			if st.Status != "assigned" || st.RegistrationState.AssignedHub == "" || st.RegistrationState.DeviceID == "" {
				t.Errorf("body = %s", rec.Body)
			}
		},
	},
		{name: "failed", setup: func(f *fakeEngine) { f.result = withStatus(assigned(), "failed") },
			q: get(opPath+apiQuery, nil), wantStatus: 200, wantCall: "OperationStatus"},
		{name: "disabled", setup: func(f *fakeEngine) { f.result = withStatus(assigned(), "disabled") },
			q: get(opPath+apiQuery, nil), wantStatus: 200, wantCall: "OperationStatus"},
		{name: "unassigned becomes assigning", setup: func(f *fakeEngine) { f.result = withStatus(assigned(), "unassigned") },
			q: get(opPath+apiQuery, nil), wantStatus: 202, wantCall: "OperationStatus",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
				checkRetryAfter(t, rec, 2)
				if strings.Contains(rec.Body.String(), "unassigned") {
					t.Errorf("body = %s", rec.Body)
				}
			}},
		{name: "no body", q: req{method: http.MethodGet, target: opPath + apiQuery, noCT: true},
			wantStatus: 202, wantCall: "OperationStatus", check: wantOpID(testOpID)},
		{name: "non-json body ignored", q: req{method: http.MethodGet, target: opPath + apiQuery, body: str("garbage"),
			header: map[string]string{"Content-Type": "text/plain"}}, wantStatus: 202, wantCall: "OperationStatus"},
		{name: "percent-encoded op id", q: get("/"+testScope+"/registrations/dev1/operations/op%3A1"+apiQuery, nil),
			wantStatus: 202, wantCall: "OperationStatus", check: wantOpID("op:1")},
		{name: "bare uuid op id", q: get("/"+testScope+"/registrations/dev1/operations/b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550"+apiQuery, nil),
			wantStatus: 202, wantCall: "OperationStatus", check: wantOpID("b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550")},
		{name: "unknown operation", setup: func(f *fakeEngine) { f.err = apierr.New(apierr.CodeNotFound, "Operation not found.") },
			q: get(opPath+apiQuery, nil), wantStatus: 404, wantCode: 404000, wantCall: "OperationStatus"},
		{name: "engine panic", setup: func(f *fakeEngine) { f.panic = true },
			q: get(opPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "OperationStatus"},
		{name: "op id with slash", q: get("/"+testScope+"/registrations/dev1/operations/a%2Fb"+apiQuery, nil), wantStatus: 400, wantCode: 400008},
		{name: "op id with space", q: get("/"+testScope+"/registrations/dev1/operations/a%20b"+apiQuery, nil), wantStatus: 400, wantCode: 400008},
		{name: "op id with dollar", q: get("/"+testScope+"/registrations/dev1/operations/a$b"+apiQuery, nil), wantStatus: 400, wantCode: 400008},
		{name: "op id too long", q: get("/"+testScope+"/registrations/dev1/operations/"+strings.Repeat("a", 257)+apiQuery, nil),
			wantStatus: 400, wantCode: 400008},
		{name: "bad registration id", q: get("/"+testScope+"/registrations/dev%201/operations/op"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "bad scope", q: get("/0ne0000000g/registrations/dev1/operations/op"+apiQuery, nil), wantStatus: 400, wantCode: 400000},
		{name: "bad api-version", q: get(opPath+"?api-version=2019", nil), wantStatus: 400, wantCode: 400001},
		{name: "api-version missing", q: get(opPath, nil), wantStatus: 202, wantCall: "OperationStatus"},
		{name: "put on operation", q: put(opPath+apiQuery, str("{}")), wantStatus: 405, wantCode: 405000,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
				if got := rec.Header().Get("Allow"); got != "GET" {
					t.Errorf("Allow = %q, want GET", got)
				}
			}},
	})
}

func post(target string, body *string) req {
	return req{method: http.MethodPost, target: target, body: body}
}

// wantState checks a bare DeviceRegistrationResult answer.
func wantState(status string) func(*testing.T, *httptest.ResponseRecorder, call) {
	return func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if _, wrapped := m["registrationState"]; wrapped || m["registrationId"] != testRegID || m["status"] != status {
			t.Errorf("body = %s, want a bare DeviceRegistrationResult with status %q", rec.Body, status)
		}
		checkRetryAfter(t, rec, 0)
	}
}

func TestRegistrationStatus(t *testing.T) {
	runCases(t, []tcase{
		{name: "with body", q: post(statusPath+apiQuery, str(`{"registrationId":"dev1"}`)), wantStatus: 200,
			wantCall: "RegistrationStatus", check: func(t *testing.T, rec *httptest.ResponseRecorder, c call) {
				wantState("assigned")(t, rec, c)
				wantBody(&model.DeviceRegistration{RegistrationID: testRegID})(t, rec, c)
			}},
		{name: "empty body", q: post(statusPath+apiQuery, str("")), wantStatus: 200, wantCall: "RegistrationStatus", check: wantBody(nil)},
		{name: "missing body", q: req{method: http.MethodPost, target: statusPath + apiQuery, noCT: true},
			wantStatus: 200, wantCall: "RegistrationStatus", check: wantState("assigned")},
		{name: "unknown fields", q: post(statusPath+apiQuery, str(`{"registrationId":"Dev1","payload":null,"z":1}`)),
			wantStatus: 200, wantCall: "RegistrationStatus"},
		{name: "trailing slash", q: post(statusPath+"/"+apiQuery, nil), wantStatus: 200, wantCall: "RegistrationStatus"},
		{name: "unassigned never sent", setup: func(f *fakeEngine) {
			f.state = &model.DeviceRegistrationResult{RegistrationID: testRegID, Status: "unassigned"}
		}, q: post(statusPath+apiQuery, nil), wantStatus: 200, wantCall: "RegistrationStatus", check: wantState("assigning")},
		{name: "not registered", setup: func(f *fakeEngine) { f.err = apierr.New(apierr.CodeRegistrationMissing, "No registration.") },
			q: post(statusPath+apiQuery, nil), wantStatus: 404, wantCode: 404202, wantCall: "RegistrationStatus"},
		{name: "nil result", setup: func(f *fakeEngine) { f.state = nil },
			q: post(statusPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "RegistrationStatus"},
		{name: "body id mismatch", q: post(statusPath+apiQuery, str(`{"registrationId":"dev2"}`)), wantStatus: 400, wantCode: 400008},
		{name: "malformed body", q: post(statusPath+apiQuery, str(`{`)), wantStatus: 400, wantCode: 400008},
		{name: "body too large", maxBody: 8, q: post(statusPath+apiQuery, str(`{"registrationId":"dev1"}`)), wantStatus: 413, wantCode: 413000},
		{name: "xml", q: req{method: http.MethodPost, target: statusPath + apiQuery, body: str(`<a/>`),
			header: map[string]string{"Content-Type": "application/xml"}}, wantStatus: 415, wantCode: 415000},
		{name: "bad registration id", q: post("/"+testScope+"/registrations/a%3Fb"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "get on registration", q: get(statusPath+apiQuery, nil), wantStatus: 405, wantCode: 405000,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
				if got := rec.Header().Get("Allow"); got != "POST" {
					t.Errorf("Allow = %q, want POST", got)
				}
			}},
	})
}
