// Package apierr renders errors in the DPS error shape (spec/dps-protocol.md
// §2.7): a JSON body {errorCode, trackingId, message, timestampUtc} with
// Content-Type application/json and the x-ms-error-code header.
//
// Handlers return errors; one function writes them. The message of an
// *Error is shown to the client; any wrapped cause stays in the logs.
package apierr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// DPS error codes: the HTTP status times 1000 plus a detail.
const (
	CodeBadRequest          = 400000
	CodeInvalidRegistration = 400004 // illegal registration id
	CodeBadArgument         = 400008
	CodeInvalidAPIVersion   = 400001
	CodeInvalidEtag         = 400011
	CodeUnauthorized        = 401000
	CodeForbidden           = 403000
	CodeNotFound            = 404000
	CodeEnrollmentNotFound  = 404201
	CodeRegistrationMissing = 404202
	CodeOperationNotFound   = 404203
	CodeInstanceNotFound    = 404204
	CodeMethodNotAllowed    = 405000
	CodeConflict            = 409000
	CodePreconditionFailed  = 412002
	CodePayloadTooLarge     = 413000
	CodeUnsupportedMedia    = 415000
	CodeThrottled           = 429001
	CodeInternal            = 500000
	CodeUnavailable         = 503000
)

// Error is an error a client sees.
type Error struct {
	Status  int    // HTTP status
	Code    int    // DPS errorCode
	Message string // safe to show
	Cause   error  // internal, logged only
	Header  http.Header
	// Forwarded marks an error answered by another region for a request
	// this node only passed on: it is not logged here beyond its code, so
	// that nothing identifying a residency instance's devices is written
	// outside its region (docs/dr.md).
	Forwarded bool
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns an error with status derived from code (code/1000).
func New(code int, format string, args ...any) *Error {
	return &Error{Status: code / 1000, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap is New with an internal cause.
func Wrap(cause error, code int, format string, args ...any) *Error {
	e := New(code, format, args...)
	e.Cause = cause
	return e
}

// Body is the JSON error body.
type Body struct {
	ErrorCode    int    `json:"errorCode"`
	TrackingID   string `json:"trackingId"`
	Message      string `json:"message"`
	TimestampUTC string `json:"timestampUtc"`
	Info         any    `json:"info,omitempty"`
}

// Write renders err. Errors that are not *Error become 500 with a generic
// message; their text is only logged.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = Wrap(err, CodeInternal, "Internal error.")
	}
	// The request's id (Track) is the body's trackingId, the
	// x-ms-request-id header and the request_id of the log line.
	tid := RequestID(r.Context())
	if tid == "" {
		tid = uuid.NewString()
	}
	// Paths carry ID scopes and registration ids: log the route pattern
	// (empty outside a ServeMux), never the path (docs/dr.md).
	switch {
	case log == nil:
	case e.Forwarded:
		log.Debug("forwarded request refused", "method", r.Method, "status", e.Status, "code", e.Code, LogKeyRequestID, tid)
	case e.Status >= 500:
		log.Error("request failed", "method", r.Method, "pattern", r.Pattern, "status", e.Status, LogKeyRequestID, tid, "err", err)
	default:
		log.Debug("request refused", "method", r.Method, "pattern", r.Pattern, "status", e.Status, "code", e.Code, LogKeyRequestID, tid, "err", err)
	}
	h := w.Header()
	for k, v := range e.Header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("x-ms-error-code", strconv.Itoa(e.Code))
	h.Set(HeaderRequestID, tid)
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(Body{
		ErrorCode: e.Code, TrackingID: tid, Message: e.Message,
		TimestampUTC: time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"),
	})
}

// HeaderRequestID is the response header that carries a request's id, as
// DPS and ARM answer it; an error body's trackingId is the same id.
const HeaderRequestID = "x-ms-request-id"

// LogKeyRequestID is the log attribute of a request's id.
const LogKeyRequestID = "request_id"

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Track gives each request an id, unless its context already carries one
// (an outer Track): a new UUID, set as the x-ms-request-id response header
// and carried by the request's context, where Write finds it for the
// error body's trackingId and its log line.
func Track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if RequestID(r.Context()) == "" {
			id := uuid.NewString()
			w.Header().Set(HeaderRequestID, id)
			r = r.WithContext(WithRequestID(r.Context(), id))
		}
		h.ServeHTTP(w, r)
	})
}

// HandlerFunc is an HTTP handler that returns its error.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler adapts h: a returned error is written with Write, and a panic
// becomes a 500 in the DPS shape (never a dropped connection).
func Handler(log *slog.Logger, h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if log != nil {
					log.Error("handler panic", "pattern", r.Pattern, "panic", p, "stack", string(debug.Stack()))
				}
				Write(w, r, nil, New(CodeInternal, "Internal error."))
			}
		}()
		if err := h(w, r); err != nil {
			Write(w, r, log, err)
		}
	})
}

// JSON writes v with status and the JSON content type.
func JSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
