package hubsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// IoT Hub error code names, sent in the "iothub-errorcode" header and in
// the body as {"Message":"ErrorCode:<name>;<text>","ExceptionMessage":...}
// (the Node SDK maps DeviceNotFound and IotHubNotFound from the body:
// azure-iothub dist/common-http/rest_api_client.js translateError).
const (
	codeArgumentInvalid      = "ArgumentInvalid"
	codeDeviceNotFound       = "DeviceNotFound"
	codeIotHubNotFound       = "IotHubNotFound"
	codeDeviceAlreadyExists  = "DeviceAlreadyExists"
	codePreconditionFailed   = "PreconditionFailed"
	codeUnauthorized         = "IotHubUnauthorizedAccess"
	codeServiceUnavailable   = "ServiceUnavailable"
	codeMethodNotAllowed     = "MethodNotAllowed"
	codeRequestEntityTooBig  = "MessageTooLarge"
	codeInvalidResource      = "InvalidResource"
	headerErrorCode          = "iothub-errorcode"
	contentTypeJSON          = "application/json; charset=utf-8"
	exceptionTimestampLayout = "01/02/2006 15:04:05"
)

// apiError is an error answer. msg is shown to the client.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.msg) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// errorBody is IoT Hub's error shape.
type errorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// writeError renders e in IoT Hub's error shape.
func writeError(w http.ResponseWriter, e *apiError, now time.Time) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	body := errorBody{
		Message:          "ErrorCode:" + e.code + ";" + e.msg,
		ExceptionMessage: "Tracking ID:" + hex.EncodeToString(b) + "-G:0-TimeStamp:" + now.UTC().Format(exceptionTimestampLayout),
	}
	w.Header().Set(headerErrorCode, e.code)
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"Message":"ErrorCode:ServerError;encoding failed"}`)
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
