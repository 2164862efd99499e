package controlapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/store"
)

// errorBody is the error shape of the control API. It satisfies two
// readers at once:
//
//   - the ARM SDKs (@azure/arm-deviceprovisioningservices), which read
//     ErrorDetails {code (a number in the TypeSpec model), httpStatusCode,
//     message, details} from the top level of the body, and whose
//     createRestError takes message and code from body.error ?? body;
//   - DPS clients, which read {errorCode, trackingId, message, timestampUtc}
//     (spec §2.7, package apierr).
//
// code and errorCode carry the same DPS code (e.g. 400008); httpStatusCode
// is the .NET HttpStatusCode name ("BadRequest", "NotFound", ...).
//
// error is the ARM common error shape {"error":{"code","message"}}, which
// ARM clients read first (createRestError: body.error ?? body), so that
// RestError.code is a string as ARM callers expect ("BadRequest",
// "NotFound", "PreconditionFailed", ...) and RestError.message the text.
type errorBody struct {
	Error          armError `json:"error"`
	Code           int      `json:"code"`
	HTTPStatusCode string   `json:"httpStatusCode"`
	Message        string   `json:"message"`
	Details        string   `json:"details,omitempty"`
	ErrorCode      int      `json:"errorCode"`
	TrackingID     string   `json:"trackingId"`
	TimestampUTC   string   `json:"timestampUtc"`
}

// armError is ErrorDetail of the ARM common types.
type armError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statusName returns the .NET HttpStatusCode name of an HTTP status.
func statusName(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// writeError renders err. Errors that are not client errors become 500 with
// a generic message; their text goes to the log only.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := toAPIError(err)
	// One id for the trackingId, x-ms-request-id and the log line
	// (apierr.Track gives it to the request).
	tid := apierr.RequestID(r.Context())
	if tid == "" {
		tid = uuid.NewString()
	}
	if e.Status >= 500 {
		h.log.Error("control request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, apierr.LogKeyRequestID, tid, "err", err)
	} else {
		h.log.Debug("control request refused", "method", r.Method, "path", r.URL.Path, "status", e.Status, "code", e.Code, apierr.LogKeyRequestID, tid, "err", err)
	}
	hd := w.Header()
	for k, v := range e.Header {
		hd[k] = v
	}
	hd.Set("Content-Type", "application/json; charset=utf-8")
	hd.Set("x-ms-error-code", strconv.Itoa(e.Code))
	hd.Set(apierr.HeaderRequestID, tid)
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(errorBody{
		Error: armError{Code: statusName(e.Status), Message: e.Message},
		Code:  e.Code, HTTPStatusCode: statusName(e.Status), Message: e.Message, ErrorCode: e.Code,
		TrackingID: tid, TimestampUTC: time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"),
	})
}

// toAPIError maps manager and store errors to HTTP errors.
func toAPIError(err error) *apierr.Error {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e
	}
	msg := instance.Message(err)
	switch {
	case errors.Is(err, instance.ErrNotFound):
		return apierr.Wrap(err, apierr.CodeNotFound, "%s", msg)
	case errors.Is(err, instance.ErrExists):
		return apierr.Wrap(err, apierr.CodeConflict, "%s", msg)
	case errors.Is(err, instance.ErrPrecondition):
		return apierr.Wrap(err, apierr.CodePreconditionFailed, "%s", msg)
	case msg != "": // ErrInvalid, ErrLimit, ErrWrongRegion, ErrHubCheck
		return apierr.Wrap(err, apierr.CodeBadArgument, "%s", msg)
	case errors.Is(err, store.ErrFenced):
		return apierr.Wrap(err, apierr.CodeConflict, "The instance is read-only in this region: %s.",
			strings.TrimPrefix(err.Error(), "store: instance is not writable in this region (fenced): "))
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrConflict):
		e := apierr.Wrap(err, apierr.CodeUnavailable, "Storage is unavailable or busy; try again.")
		e.Header = http.Header{"Retry-After": {"1"}}
		return e
	}
	return apierr.Wrap(err, apierr.CodeInternal, "Internal error.")
}

// badRequest is a 400 with a DPS bad-argument code.
func badRequest(format string, args ...any) error {
	return apierr.New(apierr.CodeBadArgument, format, args...)
}

// notFound is a 404.
func notFound(format string, args ...any) error {
	return apierr.New(apierr.CodeNotFound, format, args...)
}
