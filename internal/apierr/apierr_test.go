package apierr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// decodeBody parses a DPS error body and checks its shape: exactly the
// four fields, a UUID tracking id and a recent UTC timestamp.
func decodeBody(t *testing.T, rec *httptest.ResponseRecorder) Body {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", rec.Body, err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"errorCode", "message", "timestampUtc", "trackingId"}; !slices.Equal(keys, want) {
		t.Errorf("body fields = %q, want %q", keys, want)
	}
	var b Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if _, err := uuid.Parse(b.TrackingID); err != nil {
		t.Errorf("trackingId %q is not a UUID: %v", b.TrackingID, err)
	}
	ts, err := time.Parse("2006-01-02T15:04:05.0000000Z", b.TimestampUTC)
	if err != nil {
		t.Errorf("timestampUtc %q: %v", b.TimestampUTC, err)
	} else if d := time.Since(ts); d < -time.Minute || d > time.Minute {
		t.Errorf("timestampUtc %q is %v away from now", b.TimestampUTC, d)
	}
	if got, want := rec.Header().Get("Content-Type"), "application/json; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if got, want := rec.Header().Get("x-ms-error-code"), strconv.Itoa(b.ErrorCode); got != want {
		t.Errorf("x-ms-error-code = %q, want %q (the body's errorCode)", got, want)
	}
	return b
}

func TestWrite(t *testing.T) {
	retry := &Error{Status: 429, Code: CodeThrottled, Message: "Slow down.", Header: http.Header{"Retry-After": {"3"}}}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   int
		wantMsg    string
		secret     string // must not reach the client
		wantHeader map[string]string
	}{
		{"not found", New(CodeEnrollmentNotFound, "Enrollment %q not found.", "dev1"), 404, 404201, `Enrollment "dev1" not found.`, "", nil},
		{"bad request", New(CodeBadArgument, "bad"), 400, 400008, "bad", "", nil},
		{"wrapped cause hidden", Wrap(errors.New("etcd: secret-cause"), CodeUnavailable, "Try again."), 503, 503000, "Try again.", "secret-cause", nil},
		{"error inside fmt wrap", fmt.Errorf("ctx: %w", New(CodeConflict, "Conflict.")), 409, 409000, "Conflict.", "ctx", nil},
		{"plain error", errors.New("db password is hunter2"), 500, CodeInternal, "Internal error.", "hunter2", nil},
		{"headers", retry, 429, CodeThrottled, "Slow down.", "", map[string]string{"Retry-After": "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, httptest.NewRequest("GET", "/x", nil), nil, tt.err)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			b := decodeBody(t, rec)
			if b.ErrorCode != tt.wantCode {
				t.Errorf("errorCode = %d, want %d", b.ErrorCode, tt.wantCode)
			}
			if b.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", b.Message, tt.wantMsg)
			}
			if tt.secret != "" && strings.Contains(rec.Body.String(), tt.secret) {
				t.Errorf("body %q leaks %q", rec.Body, tt.secret)
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestWriteTrackingIDsDiffer(t *testing.T) {
	ids := map[string]bool{}
	for range 3 {
		rec := httptest.NewRecorder()
		Write(rec, httptest.NewRequest("GET", "/", nil), nil, New(CodeNotFound, "x"))
		ids[decodeBody(t, rec).TrackingID] = true
	}
	if got, want := len(ids), 3; got != want {
		t.Errorf("%d distinct tracking ids in %d responses, want %d", got, want, want)
	}
}

func TestWriteLogsCauseWithTrackingID(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("POST", "/p", nil), log, errors.New("disk on fire"))
	b := decodeBody(t, rec)
	var entry map[string]any
	if err := json.Unmarshal(logs.Bytes(), &entry); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if got, want := entry["request_id"], b.TrackingID; got != want {
		t.Errorf("logged request_id = %v, want the body's trackingId %q", got, want)
	}
	if got := rec.Header().Get("x-ms-request-id"); got != b.TrackingID {
		t.Errorf("x-ms-request-id = %q, want the body's trackingId %q", got, b.TrackingID)
	}
	if got := fmt.Sprint(entry["err"]); !strings.Contains(got, "disk on fire") {
		t.Errorf("logged err = %q, want the internal cause", got)
	}
}

func TestNewAndWrap(t *testing.T) {
	cause := errors.New("root")
	e := Wrap(cause, CodeInstanceNotFound, "Instance %s not found.", "a")
	if got, want := e.Status, 404; got != want {
		t.Errorf("Status = %d, want %d", got, want)
	}
	if !errors.Is(e, cause) {
		t.Error("errors.Is(Wrap(cause), cause) = false")
	}
	if got, want := e.Error(), "404204 Instance a not found.: root"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := New(CodeUnauthorized, "no").Error(), "401000 no"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name       string
		h          HandlerFunc
		wantStatus int
		wantCode   int // 0: not an error response
		secret     string
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) error { return JSON(w, 201, map[string]int{"a": 1}) }, 201, 0, ""},
		{"returns error", func(w http.ResponseWriter, r *http.Request) error { return New(CodeForbidden, "no") }, 403, CodeForbidden, ""},
		{"returns plain error", func(w http.ResponseWriter, r *http.Request) error { return errors.New("private") }, 500, CodeInternal, "private"},
		{"panics", func(w http.ResponseWriter, r *http.Request) error { panic("kaboom-secret") }, 500, CodeInternal, "kaboom"},
		{"panics with error", func(w http.ResponseWriter, r *http.Request) error { panic(errors.New("nil map")) }, 500, CodeInternal, "nil map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := Handler(slog.New(slog.NewTextHandler(&logs, nil)), tt.h)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/z", nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantCode == 0 {
				return
			}
			b := decodeBody(t, rec)
			if b.ErrorCode != tt.wantCode {
				t.Errorf("errorCode = %d, want %d", b.ErrorCode, tt.wantCode)
			}
			if tt.secret != "" {
				if strings.Contains(rec.Body.String(), tt.secret) {
					t.Errorf("body %q leaks %q", rec.Body, tt.secret)
				}
				if !strings.Contains(logs.String(), tt.secret) {
					t.Errorf("log %q does not record %q", logs.String(), tt.secret)
				}
			}
		})
	}
}

func TestHandlerRepanicsAbort(t *testing.T) {
	h := Handler(nil, func(w http.ResponseWriter, r *http.Request) error { panic(http.ErrAbortHandler) })
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", p)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

// TestHandlerPanicOverHTTP checks that a client sees a 500 DPS body, not a
// dropped connection.
func TestHandlerPanicOverHTTP(t *testing.T) {
	srv := httptest.NewServer(Handler(nil, func(w http.ResponseWriter, r *http.Request) error { panic("x") }))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET: %v (connection dropped?)", err)
	}
	defer resp.Body.Close()
	if got, want := resp.StatusCode, 500; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	var b Body
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || b.ErrorCode != CodeInternal {
		t.Errorf("body = %+v, %v; want errorCode %d", b, err, CodeInternal)
	}
}

func TestJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := JSON(rec, 202, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Code, 202; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := rec.Body.String(), "{\"k\":\"v\"}\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if got, want := rec.Header().Get("Content-Type"), "application/json; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}

	rec = httptest.NewRecorder()
	if err := JSON(rec, 200, make(chan int)); err == nil {
		t.Error("JSON(chan) succeeded, want an error")
	}
	if rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "" {
		t.Errorf("JSON wrote %q before failing; the error could no longer be rendered", rec.Body)
	}
}

// TestTrackRequestID: behind Track, a request's id is its x-ms-request-id
// header, the trackingId of its error body and the request_id of the log
// line of that error (4xx at debug level too); an outer Track's id is kept.
func TestTrackRequestID(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var seen string
	h := Track(Handler(log, func(w http.ResponseWriter, r *http.Request) error {
		seen = RequestID(r.Context())
		return New(CodeEnrollmentNotFound, "no such enrollment")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	b := decodeBody(t, rec)
	var entry map[string]any
	if err := json.Unmarshal(logs.Bytes(), &entry); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	if seen == "" || b.TrackingID != seen || rec.Header().Get("x-ms-request-id") != seen || entry["request_id"] != seen {
		t.Errorf("request id %q, trackingId %q, header %q, logged %v: want one id",
			seen, b.TrackingID, rec.Header().Get("x-ms-request-id"), entry["request_id"])
	}
	outer := Track(Track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r.Context()) })))
	rec = httptest.NewRecorder()
	outer.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if seen == "" || rec.Header().Get("x-ms-request-id") != seen {
		t.Errorf("nested Track: id %q, header %q", seen, rec.Header().Get("x-ms-request-id"))
	}
}
