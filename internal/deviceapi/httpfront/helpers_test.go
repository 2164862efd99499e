package httpfront_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/httpfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	testScope  = "0ne00000001"
	testRegID  = "dev1"
	testOpID   = "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550"
	testSAS    = "SharedAccessSignature sr=0ne00000001/registrations/dev1&sig=%2Bk%2FFcc%3D&skn=registration&se=1795644858"
	jsonCT     = "application/json; charset=utf-8"
	regPath    = "/" + testScope + "/registrations/" + testRegID + "/register"
	opPath     = "/" + testScope + "/registrations/" + testRegID + "/operations/" + testOpID
	statusPath = "/" + testScope + "/registrations/" + testRegID
	apiQuery   = "?api-version=2019-03-31"
)

// call is one engine call the fake saw.
type call struct {
	method string // Register, OperationStatus, RegistrationStatus
	req    engine.Request
	opID   string
}

// fakeEngine answers every call with its configured values and records
// the calls. Safe for concurrent use.
type fakeEngine struct {
	mu     sync.Mutex
	calls  []call
	result *engine.Result                  // Register, OperationStatus
	state  *model.DeviceRegistrationResult // RegistrationStatus
	err    error
	panic  bool
}

func (f *fakeEngine) record(method string, req *engine.Request, opID string) (*engine.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method: method, req: *req, opID: opID})
	if f.panic {
		panic("fake engine panic")
	}
	return f.result, f.err
}

func (f *fakeEngine) Authenticate(_ context.Context, req *engine.Request) error {
	_, err := f.record("Authenticate", req, "")
	return err
}

func (f *fakeEngine) Register(_ context.Context, req *engine.Request) (*engine.Result, error) {
	return f.record("Register", req, "")
}

func (f *fakeEngine) OperationStatus(_ context.Context, req *engine.Request, opID string) (*engine.Result, error) {
	return f.record("OperationStatus", req, opID)
}

func (f *fakeEngine) RegistrationStatus(_ context.Context, req *engine.Request) (*model.DeviceRegistrationResult, error) {
	_, err := f.record("RegistrationStatus", req, "")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state, err
}

func (f *fakeEngine) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// assigning, assigned are typical engine answers.
func assigning(retry int) *engine.Result {
	return &engine.Result{RetryAfter: retry, Status: &model.RegistrationOperationStatus{
		OperationID: testOpID, Status: model.OpStatusAssigning,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: testRegID, Status: model.OpStatusAssigning},
	}}
}

func assigned() *engine.Result {
	return &engine.Result{Status: &model.RegistrationOperationStatus{
		OperationID: testOpID, Status: model.OpStatusAssigned,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: testRegID, Status: model.OpStatusAssigned,
			AssignedHub: "hub1.azure-devices.net", DeviceID: testRegID, Substatus: model.SubstatusInitialAssignment},
	}}
}

func withStatus(res *engine.Result, status string) *engine.Result {
	res.Status.Status = status
	res.Status.RegistrationState.Status = status
	return res
}

// testLogger routes handler logs to t.Log when HTTPFRONT_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HTTPFRONT_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// newHandler returns a handler over fe with a private metrics registry.
func newHandler(t testing.TB, fe *fakeEngine, maxBody int64) http.Handler {
	t.Helper()
	h, err := httpfront.New(httpfront.Config{Engine: fe, Log: testLogger(t), MaxBody: maxBody,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// req describes a request; zero fields mean the Node SDK's defaults for
// the register call.
type req struct {
	method  string
	target  string
	body    *string // nil: no body
	header  map[string]string
	noCT    bool // drop the default Content-Type
	chunked bool // unknown Content-Length
}

func str(s string) *string { return &s }

func (q req) build() *http.Request {
	var body io.Reader = http.NoBody
	if q.body != nil {
		body = strings.NewReader(*q.body)
	}
	r := httptest.NewRequest(q.method, q.target, body)
	r.Host = "dps.example.net"
	if !q.noCT {
		r.Header.Set("Content-Type", jsonCT)
	}
	r.Header.Set("Accept", "application/json")
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	if q.chunked {
		r.ContentLength = -1
	}
	return r
}

func serve(h http.Handler, q req) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, q.build())
	return rec
}

// checkCommon asserts what every answer carries: the JSON content type,
// a request id and a JSON body.
func checkCommon(t testing.TB, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if got := rec.Header().Get("Content-Type"); got != jsonCT {
		t.Errorf("Content-Type = %q, want %q", got, jsonCT)
	}
	if rec.Header().Get("x-ms-request-id") == "" {
		t.Errorf("x-ms-request-id missing")
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", rec.Body.String(), err)
	}
	return m
}

// checkError asserts a DPS-shaped error with status and errorCode (0:
// any code of that status).
func checkError(t testing.TB, rec *httptest.ResponseRecorder, status, code int) apierr.Body {
	t.Helper()
	checkCommon(t, rec)
	if rec.Code != status {
		t.Errorf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var b apierr.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if code != 0 && b.ErrorCode != code {
		t.Errorf("errorCode = %d, want %d (%s)", b.ErrorCode, code, b.Message)
	}
	if b.ErrorCode/1000 != rec.Code {
		t.Errorf("errorCode %d does not match status %d", b.ErrorCode, rec.Code)
	}
	if got := rec.Header().Get("x-ms-error-code"); got != strconv.Itoa(b.ErrorCode) {
		t.Errorf("x-ms-error-code = %q, want %d", got, b.ErrorCode)
	}
	if b.TrackingID == "" || b.TimestampUTC == "" || b.Message == "" {
		t.Errorf("error body lacks trackingId/timestampUtc/message: %s", rec.Body)
	}
	return b
}

// decodeOp decodes a RegistrationOperationStatus answer.
func decodeOp(t testing.TB, rec *httptest.ResponseRecorder) model.RegistrationOperationStatus {
	t.Helper()
	checkCommon(t, rec)
	var st model.RegistrationOperationStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkRetryAfter asserts the Retry-After header: want 0 means absent.
func checkRetryAfter(t testing.TB, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	got := rec.Header().Get("Retry-After")
	if want == 0 {
		if got != "" {
			t.Errorf("Retry-After = %q, want none", got)
		}
		return
	}
	if n, err := strconv.Atoi(got); err != nil || n != want {
		t.Errorf("Retry-After = %q, want integer %d", got, want)
	}
}
