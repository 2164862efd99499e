package hub

import (
	"errors"
	"net/http"
	"testing"
)

func TestNewError(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		header   string
		body     string
		wantCode string
		wantMsg  string
		wantIs   error
	}{
		{"classic", 404, "", `{"Message":"ErrorCode:DeviceNotFound;Device x not found.","ExceptionMessage":"Tracking ID:1"}`, "DeviceNotFound", "Device x not found.", ErrNotFound},
		{"header wins", 404, "DeviceNotFound", `{"Message":"{\"errorCode\":404001,\"message\":\"gone\"}","ExceptionMessage":""}`, "DeviceNotFound", "gone", ErrNotFound},
		{"json message", 412, "", `{"Message":"{\"errorCode\":412002,\"message\":\"etag\"}"}`, "412002", "etag", ErrPreconditionFailed},
		{"plain text", 503, "", "upstream down", "", "upstream down", ErrUnavailable},
		{"empty", 401, "", "", "", "", ErrUnauthorized},
		{"conflict", 409, "", `{"Message":"ErrorCode:DeviceAlreadyExists;exists"}`, "DeviceAlreadyExists", "exists", ErrConflict},
		{"throttled", 429, "", `{}`, "", "{}", ErrThrottled},
		{"quota", 403, "", `{"Message":"ErrorCode:IotHubQuotaExceeded;full"}`, "IotHubQuotaExceeded", "full", ErrQuotaExceeded},
		{"bad request", 400, "", `{"Message":"no code here"}`, "", "no code here", ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set(HeaderErrorCode, tt.header)
			}
			e := newError("GET /x", tt.status, h, []byte(tt.body))
			if e.Code != tt.wantCode || e.Message != tt.wantMsg {
				t.Errorf("got code %q msg %q, want %q %q", e.Code, e.Message, tt.wantCode, tt.wantMsg)
			}
			if !errors.Is(e, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", e, tt.wantIs)
			}
		})
	}
}

func TestQuoteETag(t *testing.T) {
	for in, want := range map[string]string{"*": `"*"`, "abc": `"abc"`, `"q"`: `"q"`, `"`: `"""`} {
		if got := quoteETag(in); got != want {
			t.Errorf("quoteETag(%q) = %q, want %q", in, got, want)
		}
	}
}
