package allocate

import (
	"errors"
	"fmt"
)

// DPS error codes of allocation failures (spec/dps-protocol.md §2.7). They
// end a registration with status "failed" and registrationState.errorCode;
// clients read errorCode/1000 as the HTTP status.
const (
	// CodeNoHub: no IoT hub can be assigned (none linked, none listed, none
	// participating in the policy, static misconfigured, unsupported
	// policy). The C SDK maps it to PROV_DEVICE_RESULT_HUB_NOT_SPECIFIED.
	CodeNoHub = 400208
	// CodeCustomAllocationFailed: the custom allocation webhook failed
	// (non-2xx, timeout, unreadable answer, hub outside linkedHubs). DPS
	// does not document its code; 400209 is taken (unauthorized at hub,
	// §2.7), so opendps uses the next one.
	CodeCustomAllocationFailed = 400210
	// CodeNoHealthyHub: every candidate hub is reported unhealthy. A 5xx
	// code, so SDKs treat it as transient and retry.
	CodeNoHealthyHub = 503000
)

// Causes of allocation failures. Every failure is an *Error whose Cause
// wraps one of these; test with errors.Is.
var (
	// ErrNoHub: no candidate hub (see CodeNoHub).
	ErrNoHub = errors.New("allocate: no IoT hub can be assigned")
	// ErrNoHealthyHub: candidates exist but all are unhealthy.
	ErrNoHealthyHub = errors.New("allocate: no healthy IoT hub")
	// ErrPolicy: the allocation policy is unknown, or custom without a
	// webhook, or custom as the instance default.
	ErrPolicy = errors.New("allocate: unsupported allocation policy")
	// ErrWebhook wraps every custom allocation webhook failure, together
	// with one of the four below.
	ErrWebhook = errors.New("allocate: custom allocation webhook failed")
	// ErrWebhookStatus: the webhook answered a non-2xx status.
	ErrWebhookStatus = errors.New("allocate: webhook status")
	// ErrWebhookTimeout: the webhook did not answer within the timeout,
	// or could not be reached.
	ErrWebhookTimeout = errors.New("allocate: webhook unreachable or timed out")
	// ErrWebhookResponse: the answer is not a valid AllocationResponse.
	ErrWebhookResponse = errors.New("allocate: webhook response invalid")
	// ErrWebhookHub: the answer names no hub, or a hub outside linkedHubs.
	ErrWebhookHub = errors.New("allocate: webhook chose no offered hub")
)

// Error is an allocation failure. Message is precise and safe to show to
// the device as registrationState.errorMessage (it never contains the
// webhook URL, whose query carries the function key); Cause is for logs.
type Error struct {
	Code    int    // DPS errorCode
	Message string // shown to the client
	Cause   error  // wraps the sentinels above
}

// Error returns "allocate: " + Message.
func (e *Error) Error() string { return "allocate: " + e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

func fail(code int, sentinel error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: code, Message: msg, Cause: fmt.Errorf("%w: %s", sentinel, msg)}
}

func noHub(format string, args ...any) *Error { return fail(CodeNoHub, ErrNoHub, format, args...) }

func webhookFail(kind error, cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		cause = errors.New(msg)
	}
	return &Error{Code: CodeCustomAllocationFailed, Message: msg, Cause: fmt.Errorf("%w: %w: %w", ErrWebhook, kind, cause)}
}
