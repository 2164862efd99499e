// Package engine is the provisioning engine: the one Register path that
// every device front end (HTTPS, MQTT) calls (DESIGN §5).
//
// A registration resolves the ID scope to an instance, attests the device
// (SAS token or X.509 chain), matches its enrollment, allocates a linked
// hub, creates or updates the device identity and initial twin in that hub,
// and writes the registration record in one fenced transaction. When that
// finishes within the fast-path budget the answer already says "assigned";
// otherwise it says "assigning" with an operation id that any node can
// answer a poll for.
package engine

import (
	"context"
	"crypto/x509"
	"encoding/json"

	"github.com/opendps/opendps/internal/model"
)

// Request is one device request as a front end parsed it. The engine never
// sees transport details beyond these fields.
type Request struct {
	// IDScope and RegistrationID come from the request path (HTTPS) or the
	// MQTT username; they are authoritative.
	IDScope        string
	RegistrationID string
	// SASToken is the Authorization header (HTTPS) or MQTT password; empty
	// for X.509 devices.
	SASToken string
	// PeerCertificates is the TLS client chain, leaf first.
	PeerCertificates []*x509.Certificate
	// Body is the parsed register body (nil when absent or empty).
	Body *model.DeviceRegistration
	// Transport names the front end for metrics and logs ("https",
	// "mqtt", "mqtt-ws").
	Transport string
	// ClientAddr is the client's IP address (throttling, logs).
	ClientAddr string
}

// Payload returns the device's custom payload, or nil.
func (r *Request) Payload() json.RawMessage {
	if r.Body == nil || len(r.Body.Payload) == 0 || string(r.Body.Payload) == "null" {
		return nil
	}
	return r.Body.Payload
}

// Result is what a front end answers: the operation status and, while
// assigning, how many seconds the device should wait (Retry-After).
type Result struct {
	Status     *model.RegistrationOperationStatus
	RetryAfter int // seconds; 0 when terminal
}

// Device is what front ends call. Errors are *apierr.Error (401 for
// authentication, 404 for an unknown scope or operation, 400 for bad input,
// 429 when throttled with a Retry-After header).
type Device interface {
	// Authenticate checks the device's credential exactly as Register
	// does (ID scope, then SAS token or TLS client chain against the
	// enrollments) without registering, throttling or writing anything:
	// the MQTT front end calls it at CONNECT. A disabled enrollment
	// authenticates (Register then answers "disabled"). Errors are those
	// of Register's authentication: 401, 404 for an unknown scope, 503.
	Authenticate(ctx context.Context, req *Request) error
	// Register starts (or repeats) a registration. It always yields a
	// status; front ends answer 202.
	Register(ctx context.Context, req *Request) (*Result, error)
	// OperationStatus answers a poll of operationID, authenticating like
	// Register.
	OperationStatus(ctx context.Context, req *Request, operationID string) (*Result, error)
	// RegistrationStatus answers the status lookup (POST
	// {scope}/registrations/{id}).
	RegistrationStatus(ctx context.Context, req *Request) (*model.DeviceRegistrationResult, error)
}
