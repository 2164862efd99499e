package httpfront_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// tcase is one request against a handler over a fake engine.
type tcase struct {
	name       string
	q          req
	maxBody    int64
	setup      func(*fakeEngine) // nil: answer assigning(3) / an assigned state
	wantStatus int
	wantCode   int    // errorCode for statuses >= 400; 0 any
	wantCall   string // engine method expected, "" none
	check      func(t *testing.T, rec *httptest.ResponseRecorder, c call)
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fe := &fakeEngine{result: assigning(3), state: assigned().Status.RegistrationState}
			if tc.setup != nil {
				tc.setup(fe)
			}
			rec := serve(newHandler(t, fe, tc.maxBody), tc.q)
			if tc.wantStatus >= 400 {
				checkError(t, rec, tc.wantStatus, tc.wantCode)
			} else {
				checkCommon(t, rec)
				if rec.Code != tc.wantStatus {
					t.Errorf("status = %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
				}
			}
			calls := fe.Calls()
			switch {
			case tc.wantCall == "" && len(calls) > 0:
				t.Fatalf("engine called (%s), want no call", calls[0].method)
			case tc.wantCall != "" && (len(calls) != 1 || calls[0].method != tc.wantCall):
				t.Fatalf("engine calls = %+v, want one %s", calls, tc.wantCall)
			}
			var c call
			if len(calls) == 1 {
				c = calls[0]
				checkRequest(t, c.req)
			}
			if tc.check != nil {
				tc.check(t, rec, c)
			}
		})
	}
}

// checkRequest asserts the transport fields of every engine request made
// by the table (httptest.NewRequest: RemoteAddr 192.0.2.1:1234, no TLS).
func checkRequest(t *testing.T, r engine.Request) {
	t.Helper()
	if r.Transport != "https" || r.ClientAddr != "192.0.2.1" || r.PeerCertificates != nil {
		t.Errorf("request transport fields = %q %q %v, want https 192.0.2.1 nil", r.Transport, r.ClientAddr, r.PeerCertificates)
	}
}

func put(target string, body *string) req {
	return req{method: http.MethodPut, target: target, body: body}
}

// wantBody returns a check that the engine got a body equal to want (nil:
// no body).
func wantBody(want *model.DeviceRegistration) func(*testing.T, *httptest.ResponseRecorder, call) {
	return func(t *testing.T, _ *httptest.ResponseRecorder, c call) {
		t.Helper()
		got, _ := json.Marshal(c.req.Body)
		w, _ := json.Marshal(want)
		if string(got) != string(w) || (want == nil) != (c.req.Body == nil) {
			t.Errorf("engine Body = %s, want %s", got, w)
		}
	}
}

func wantIDs(scope, regID string) func(*testing.T, *httptest.ResponseRecorder, call) {
	return func(t *testing.T, _ *httptest.ResponseRecorder, c call) {
		t.Helper()
		if c.req.IDScope != scope || c.req.RegistrationID != regID {
			t.Errorf("engine ids = %q %q, want %q %q", c.req.IDScope, c.req.RegistrationID, scope, regID)
		}
	}
}

func TestRegister(t *testing.T) {
	nodeHeaders := map[string]string{"Authorization": testSAS, "Request-Id": "99d14d15-3c7b-4ed7-af93-fe5eff5ac1ea",
		"User-Agent": "azure-iot-provisioning-device/1.9.1"}
	runCases(t, []tcase{{
		name: "node sdk", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{"registrationId":"dev1"}`), header: nodeHeaders},
		wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, c call) {
			checkRetryAfter(t, rec, 3)
			if got, want := rec.Header().Get("Location"), "https://dps.example.net"+regPath; got != want {
				t.Errorf("Location = %q, want %q", got, want)
			}
			st := decodeOp(t, rec)
			if st.OperationID != testOpID || st.Status != "assigning" || st.RegistrationState.RegistrationID != testRegID {
				t.Errorf("body = %s", rec.Body)
			}
			if c.req.SASToken != testSAS || c.req.IDScope != testScope || c.req.RegistrationID != testRegID || c.req.Body.RegistrationID != testRegID {
				t.Errorf("engine request = %+v", c.req)
			}
		},
	}, {
		name: "payload", q: put(regPath+apiQuery, str(`{"registrationId":"dev1","payload":{"modelId":"dtmi:x;1"}}`)),
		wantStatus: 202, wantCall: "Register",
		check: wantBody(&model.DeviceRegistration{RegistrationID: testRegID, Payload: json.RawMessage(`{"modelId":"dtmi:x;1"}`)}),
	}, {
		name: "python payload null", q: put(regPath+apiQuery, str(`{"payload": null, "registrationId": "dev1"}`)),
		wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, _ *httptest.ResponseRecorder, c call) {
			if c.req.Body == nil || c.req.Payload() != nil {
				t.Errorf("Body = %+v, Payload() = %s; want a body without payload", c.req.Body, c.req.Payload())
			}
		},
	},
		{name: "empty body", q: put(regPath+apiQuery, str("")), wantStatus: 202, wantCall: "Register", check: wantBody(nil)},
		{name: "whitespace body", q: put(regPath+apiQuery, str(" \r\n")), wantStatus: 202, wantCall: "Register", check: wantBody(nil)},
		{name: "missing body", q: req{method: http.MethodPut, target: regPath + apiQuery, noCT: true}, wantStatus: 202, wantCall: "Register", check: wantBody(nil)},
		{name: "json null body", q: put(regPath+apiQuery, str("null")), wantStatus: 202, wantCall: "Register", check: wantBody(nil)},
		{name: "empty object", q: put(regPath+apiQuery, str("{}")), wantStatus: 202, wantCall: "Register", check: wantBody(&model.DeviceRegistration{})},
		{name: "unknown fields", q: put(regPath+apiQuery, str(`{"registrationId":"dev1","csr":"MIIB","x":{"y":[1]}}`)),
			wantStatus: 202, wantCall: "Register", check: wantBody(&model.DeviceRegistration{RegistrationID: testRegID})},
		{name: "tpm", q: put(regPath+apiQuery, str(`{"registrationId":"dev1","tpm":{"endorsementKey":"AAA=","storageRootKey":"BBB="}}`)),
			wantStatus: 202, wantCall: "Register", check: wantBody(&model.DeviceRegistration{RegistrationID: testRegID,
				TPM: &model.TPMAttestation{EndorsementKey: "AAA=", StorageRootKey: "BBB="}})},
		{name: "body id other case", q: put(regPath+apiQuery, str(`{"registrationId":"DEV1"}`)), wantStatus: 202, wantCall: "Register"},
		{name: "no content type", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{"registrationId":"dev1"}`), noCT: true},
			wantStatus: 202, wantCall: "Register", check: wantBody(&model.DeviceRegistration{RegistrationID: testRegID})},
		{name: "curl content-encoding utf-8", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{"registrationId":"dev1"}`),
			header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "utf-8"}}, wantStatus: 202, wantCall: "Register"},
		{name: "chunked body", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{"registrationId":"dev1"}`), chunked: true},
			wantStatus: 202, wantCall: "Register"},
		{name: "force registration", q: put(regPath+apiQuery+"&forceRegistration=true", str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "api-version missing", q: put(regPath, str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "api-version empty", q: put(regPath+"?api-version=", str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "api-version 2021-10-01", q: put(regPath+"?api-version=2021-10-01", str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "api-version preview", q: put(regPath+"?api-version=2025-07-01-preview", str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "api-version other case", q: put(regPath+"?API-Version=2018-04-01", str(`{}`)), wantStatus: 202, wantCall: "Register"},
		{name: "percent-encoded ids", q: put("/%30ne00000001/registrations/dev%3A1/register"+apiQuery, nil),
			wantStatus: 202, wantCall: "Register", check: wantIDs(testScope, "dev:1")},
		{name: "segments any case", q: put("/0NE0045B3C6/Registrations/Dev_1.a/REGISTER"+apiQuery, nil),
			wantStatus: 202, wantCall: "Register", check: wantIDs("0NE0045B3C6", "Dev_1.a")},
		{name: "trailing slash", q: put(regPath+"/"+apiQuery, nil), wantStatus: 202, wantCall: "Register"},
		{name: "128 char id", q: put("/"+testScope+"/registrations/"+strings.Repeat("a", 128)+"/register"+apiQuery, nil),
			wantStatus: 202, wantCall: "Register"},
	})
}

func TestRegisterAnswers(t *testing.T) {
	runCases(t, []tcase{{
		name: "terminal still 202", setup: func(f *fakeEngine) { f.result = assigned() },
		q: put(regPath+apiQuery, nil), wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
			checkRetryAfter(t, rec, 0)
			if st := decodeOp(t, rec); st.Status != "assigned" || st.RegistrationState.AssignedHub != "hub1.azure-devices.net" {
				t.Errorf("body = %s", rec.Body)
			}
		},
	}, {
		name: "assigning without retry-after", setup: func(f *fakeEngine) { f.result = assigning(0) },
		q: put(regPath+apiQuery, nil), wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) { checkRetryAfter(t, rec, 2) },
	}, {
		name: "assigning without registrationState",
		setup: func(f *fakeEngine) {
			f.result = &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: testOpID, Status: "assigning"}}
		},
		q: put(regPath+apiQuery, nil), wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
			checkRetryAfter(t, rec, 2)
			if st := decodeOp(t, rec); st.RegistrationState == nil || st.RegistrationState.RegistrationID != testRegID ||
				st.RegistrationState.Status != "assigning" {
				t.Errorf("body = %s, want registrationState {dev1, assigning}", rec.Body)
			}
		},
	}, {
		name: "unassigned never sent", setup: func(f *fakeEngine) { f.result = withStatus(assigning(0), "unassigned") },
		q: put(regPath+apiQuery, nil), wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
			checkRetryAfter(t, rec, 2)
			if strings.Contains(rec.Body.String(), "unassigned") {
				t.Errorf("body = %s", rec.Body)
			}
		},
	}, {
		name: "failed terminal", setup: func(f *fakeEngine) {
			f.result = withStatus(assigned(), "failed")
			f.result.Status.RegistrationState.ErrorCode = 400208
		},
		q: put(regPath+apiQuery, nil), wantStatus: 202, wantCall: "Register",
		check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
			if st := decodeOp(t, rec); st.Status != "failed" || st.RegistrationState.ErrorCode != 400208 {
				t.Errorf("body = %s", rec.Body)
			}
		},
	}})
}

func TestRegisterEngineErrors(t *testing.T) {
	throttled := apierr.New(apierr.CodeThrottled, "Too many requests.")
	throttled.Header = http.Header{"Retry-After": {"5"}}
	runCases(t, []tcase{
		{name: "unauthorized", setup: func(f *fakeEngine) { f.err = apierr.New(apierr.CodeUnauthorized, "Unauthorized") },
			q: put(regPath+apiQuery, nil), wantStatus: 401, wantCode: 401000, wantCall: "Register"},
		{name: "unknown scope", setup: func(f *fakeEngine) { f.err = apierr.New(apierr.CodeInstanceNotFound, "No such ID scope.") },
			q: put(regPath+apiQuery, nil), wantStatus: 404, wantCode: 404204, wantCall: "Register"},
		{name: "throttled", setup: func(f *fakeEngine) { f.err = throttled },
			q: put(regPath+apiQuery, nil), wantStatus: 429, wantCode: 429001, wantCall: "Register",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) { checkRetryAfter(t, rec, 5) }},
		{name: "plain error", setup: func(f *fakeEngine) { f.err = errors.New("etcd: secret detail") },
			q: put(regPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "Register",
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
				if strings.Contains(rec.Body.String(), "secret") {
					t.Errorf("internal cause leaked: %s", rec.Body)
				}
			}},
		{name: "nil result", setup: func(f *fakeEngine) { f.result = nil },
			q: put(regPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "Register"},
		{name: "nil status", setup: func(f *fakeEngine) { f.result = &engine.Result{} },
			q: put(regPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "Register"},
		{name: "unknown status", setup: func(f *fakeEngine) { f.result = withStatus(assigning(1), "Assigned") },
			q: put(regPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "Register"},
		{name: "panic", setup: func(f *fakeEngine) { f.panic = true },
			q: put(regPath+apiQuery, nil), wantStatus: 500, wantCode: 500000, wantCall: "Register"},
	})
}

func TestRegisterBadInput(t *testing.T) {
	big := `{"registrationId":"dev1","payload":"` + strings.Repeat("x", 96<<10) + `"}`
	long := strings.Repeat("a", 129)
	runCases(t, []tcase{
		{name: "body id mismatch", q: put(regPath+apiQuery, str(`{"registrationId":"dev2"}`)), wantStatus: 400, wantCode: 400008},
		{name: "malformed json", q: put(regPath+apiQuery, str(`{"registrationId":`)), wantStatus: 400, wantCode: 400008},
		{name: "trailing garbage", q: put(regPath+apiQuery, str(`{} x`)), wantStatus: 400, wantCode: 400008},
		{name: "array body", q: put(regPath+apiQuery, str(`[]`)), wantStatus: 400, wantCode: 400008},
		{name: "wrong field type", q: put(regPath+apiQuery, str(`{"registrationId":5}`)), wantStatus: 400, wantCode: 400008},
		{name: "body over 96 KB", q: put(regPath+apiQuery, str(big)), wantStatus: 413, wantCode: 413000},
		{name: "chunked body over limit", maxBody: 16, q: req{method: http.MethodPut, target: regPath + apiQuery,
			body: str(`{"registrationId":"dev1"}`), chunked: true}, wantStatus: 413, wantCode: 413000},
		{name: "text/plain", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{}`),
			header: map[string]string{"Content-Type": "text/plain"}}, wantStatus: 415, wantCode: 415000},
		{name: "form", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`a=b`),
			header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, wantStatus: 415, wantCode: 415000},
		{name: "unparsable content type", q: req{method: http.MethodPut, target: regPath + apiQuery, body: str(`{}`),
			header: map[string]string{"Content-Type": ";;"}}, wantStatus: 415, wantCode: 415000},
		{name: "api-version malformed", q: put(regPath+"?api-version=latest", nil), wantStatus: 400, wantCode: 400001},
		{name: "api-version too long", q: put(regPath+"?api-version=2019-03-31-"+strings.Repeat("p", 64), nil), wantStatus: 400, wantCode: 400001},
		{name: "id with space", q: put("/"+testScope+"/registrations/dev%201/register"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "id with slash", q: put("/"+testScope+"/registrations/dev%2F1/register"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "id with unicode", q: put("/"+testScope+"/registrations/d%C3%A9v/register"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "id too long", q: put("/"+testScope+"/registrations/"+long+"/register"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "id ends with dot", q: put("/"+testScope+"/registrations/dev./register"+apiQuery, nil), wantStatus: 400, wantCode: 400004},
		{name: "scope not 0ne", q: put("/1ne00000001/registrations/dev1/register"+apiQuery, nil), wantStatus: 400, wantCode: 400000},
		{name: "scope not hex", q: put("/0nezz/registrations/dev1/register"+apiQuery, nil), wantStatus: 400, wantCode: 400000},
		{name: "scope bare prefix", q: put("/0ne/registrations/dev1/register"+apiQuery, nil), wantStatus: 400, wantCode: 400000},
		{name: "scope too long", q: put("/0ne"+strings.Repeat("a", 33)+"/registrations/dev1/register"+apiQuery, nil), wantStatus: 400, wantCode: 400000},
		{name: "wrong method", q: req{method: http.MethodGet, target: regPath + apiQuery}, wantStatus: 405, wantCode: 405000,
			check: func(t *testing.T, rec *httptest.ResponseRecorder, _ call) {
				if got := rec.Header().Get("Allow"); got != "PUT" {
					t.Errorf("Allow = %q, want PUT", got)
				}
			}},
		{name: "post on register", q: req{method: http.MethodPost, target: regPath + apiQuery, body: str(`{}`)}, wantStatus: 405, wantCode: 405000},
	})
}

func TestUnknownRoutes(t *testing.T) {
	var cases []tcase
	for _, p := range []string{
		"/", "/" + testScope, "/" + testScope + "/registrations", "/" + testScope + "/devices/dev1/register",
		"/" + testScope + "/registrations/dev1/unregister", "/" + testScope + "/registrations//register",
		"/" + testScope + "/registrations/dev1/operations", "/" + testScope + "/registrations/dev1/operations/op/x",
		"//" + testScope + "//registrations/dev1/register", "/$iothub/websocket",
		"/" + testScope + "/devices/dev1/certificates/issue",
	} {
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete} {
			cases = append(cases, tcase{name: m + " " + p, q: req{method: m, target: p + apiQuery}, wantStatus: 404, wantCode: 404000})
		}
	}
	runCases(t, cases)
}
