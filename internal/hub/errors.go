package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Errors returned by Client methods, wrapped in *Error when the hub
// answered. Test them with errors.Is.
var (
	// ErrNotFound: the device (or the hub, 404 IotHubNotFound) does not exist.
	ErrNotFound = errors.New("hub: not found")
	// ErrUnauthorized: the hub refused the SAS token (401), usually a wrong
	// key or policy.
	ErrUnauthorized = errors.New("hub: unauthorized")
	// ErrPreconditionFailed: an If-Match etag did not match (412).
	ErrPreconditionFailed = errors.New("hub: precondition failed")
	// ErrConflict: the device already exists (409).
	ErrConflict = errors.New("hub: conflict")
	// ErrBadRequest: the hub rejected the request as invalid (400).
	ErrBadRequest = errors.New("hub: bad request")
	// ErrQuotaExceeded: the hub's device or message quota is exhausted (403).
	ErrQuotaExceeded = errors.New("hub: quota exceeded")
	// ErrThrottled: too many requests (429); retry later.
	ErrThrottled = errors.New("hub: throttled")
	// ErrUnavailable: the hub could not be reached, timed out, or answered
	// 5xx. The hub may be fine a moment later.
	ErrUnavailable = errors.New("hub: unavailable")
)

// HeaderErrorCode carries the IoT Hub error code name on error answers.
const HeaderErrorCode = "iothub-errorcode"

// Error is an error answer of the hub. It unwraps to the package sentinel
// matching its status.
type Error struct {
	Status  int    // HTTP status
	Code    string // IoT Hub error code name, e.g. "DeviceNotFound"; may be ""
	Message string // the hub's message, as sent
	Op      string // "GET /devices/x", for context
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = http.StatusText(e.Status)
	}
	return fmt.Sprintf("hub: %s: %d %s: %s", e.Op, e.Status, code, e.Message)
}

// Unwrap returns the sentinel for e.Status (nil for an unexpected status).
func (e *Error) Unwrap() error { return sentinelFor(e.Status) }

func sentinelFor(status int) error {
	switch {
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusPreconditionFailed:
		return ErrPreconditionFailed
	case status == http.StatusConflict:
		return ErrConflict
	case status == http.StatusBadRequest:
		return ErrBadRequest
	case status == http.StatusForbidden:
		return ErrQuotaExceeded
	case status == http.StatusTooManyRequests:
		return ErrThrottled
	case status >= 500:
		return ErrUnavailable
	}
	return nil
}

// errorBody is the IoT Hub error shape:
// {"Message":"ErrorCode:DeviceNotFound;text","ExceptionMessage":"Tracking ID:..."}.
// Newer hubs put a JSON object in Message:
// {"Message":"{\"errorCode\":404001,\"message\":\"text\",...}"}.
type errorBody struct {
	Message          string
	ExceptionMessage string
}

// newError builds an *Error from an error answer. body may be anything.
func newError(op string, status int, header http.Header, body []byte) *Error {
	e := &Error{Op: op, Status: status, Code: header.Get(HeaderErrorCode)}
	var b errorBody
	if json.Unmarshal(body, &b) != nil || b.Message == "" {
		e.Message = strings.TrimSpace(truncate(string(body), 512))
		return e
	}
	code, msg := parseMessage(b.Message)
	if e.Code == "" {
		e.Code = code
	}
	e.Message = msg
	return e
}

// parseMessage splits "ErrorCode:X;text" or the JSON-in-Message form.
func parseMessage(m string) (code, msg string) {
	if strings.HasPrefix(m, "{") {
		var inner struct {
			ErrorCode json.Number `json:"errorCode"`
			Message   string      `json:"message"`
		}
		if json.Unmarshal([]byte(m), &inner) == nil {
			return inner.ErrorCode.String(), inner.Message
		}
	}
	if rest, ok := strings.CutPrefix(m, "ErrorCode:"); ok {
		if c, text, ok := strings.Cut(rest, ";"); ok {
			return c, text
		}
	}
	return "", m
}

// unavailable wraps a transport error (dial, TLS, timeout) as ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}
