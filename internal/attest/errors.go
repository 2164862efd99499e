package attest

import (
	"errors"
	"fmt"
)

// DPS error codes of attestation refusals (spec/dps-protocol.md §2.7). Both
// are answered with HTTP 401 (MQTT res/401): errorCode/1000 is the status.
const (
	// CodeSASUnauthorized refuses a symmetric-key (SAS token) device.
	CodeSASUnauthorized = 401000
	// CodeCertificateUnauthorized refuses an X.509 device.
	CodeCertificateUnauthorized = 401002
)

// Causes of refusals, and ErrDisabled. Every refusal is an *Error whose
// Cause wraps one of these; test with errors.Is. Every *Error also matches
// ErrUnauthorized.
var (
	// ErrUnauthorized matches every *Error: the device is refused.
	ErrUnauthorized = errors.New("attest: unauthorized")
	// ErrMalformed: the token or certificate chain does not parse, or is
	// missing.
	ErrMalformed = errors.New("attest: malformed credential")
	// ErrExpired: the SAS token expired, or a certificate is outside its
	// validity period (expired or not yet valid).
	ErrExpired = errors.New("attest: credential expired or not yet valid")
	// ErrAudience: the token's sr is not {idScope}/registrations/{id}.
	ErrAudience = errors.New("attest: token audience does not match")
	// ErrKeyName: the token's skn is present and not "registration".
	ErrKeyName = errors.New("attest: unexpected token key name")
	// ErrSignature: the SAS signature verifies with no key of the
	// individual enrollment of the registration id (when there is one).
	ErrSignature = errors.New("attest: signature does not verify")
	// ErrNoEnrollment: no individual enrollment exists for the
	// registration id and no enrollment group accepts the credential.
	ErrNoEnrollment = errors.New("attest: no enrollment accepts the credential")
	// ErrAttestationType: the individual enrollment of the registration id
	// uses another attestation mechanism.
	ErrAttestationType = errors.New("attest: enrollment uses another attestation type")
	// ErrSubject: the certificate's subject CN is not the registration id.
	ErrSubject = errors.New("attest: certificate subject does not match the registration id")
	// ErrCertificate: the certificate is neither the primary nor the
	// secondary client certificate of the individual enrollment.
	ErrCertificate = errors.New("attest: certificate does not match the enrollment")
	// ErrChain: the chain does not lead to the signing certificate of an
	// enrollment group or a verified CA (unknown issuer, invalid signature,
	// issuer not a CA, ...).
	ErrChain = errors.New("attest: certificate chain not trusted")
	// ErrUnverifiedCA: the chain leads to a CA certificate that a group
	// references but whose proof of possession was never completed.
	ErrUnverifiedCA = errors.New("attest: CA certificate not verified")
	// ErrDisabled is not a refusal: it is what (*Match).Err returns for a
	// disabled match, for engines that want an error value.
	ErrDisabled = errors.New("attest: enrollment disabled")
)

// Error is an attestation refusal. Message is precise and safe to show to
// the device (it never contains key material); Cause is for logs. The zero
// value is not useful; errors of this package are always *Error.
type Error struct {
	Code    int    // DPS errorCode: CodeSASUnauthorized or CodeCertificateUnauthorized
	Message string // shown to the client
	Cause   error  // wraps one of the sentinels above
}

// Error returns "attest: " + Message.
func (e *Error) Error() string { return "attest: " + e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports true for ErrUnauthorized: every refusal is one.
func (e *Error) Is(target error) bool { return target == ErrUnauthorized }

// sasError builds a symmetric-key refusal wrapping sentinel.
func sasError(sentinel error, format string, args ...any) *Error {
	return refuse(CodeSASUnauthorized, sentinel, format, args...)
}

// certError builds an X.509 refusal wrapping sentinel.
func certError(sentinel error, format string, args ...any) *Error {
	return refuse(CodeCertificateUnauthorized, sentinel, format, args...)
}

func refuse(code int, sentinel error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: code, Message: msg, Cause: fmt.Errorf("%w: %s", sentinel, msg)}
}

// isRefusal reports whether err is a refusal (as opposed to a failure of
// the enrollment source, which the engine answers with 5xx).
func isRefusal(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// clip bounds client-supplied text quoted in messages.
func clip(s string) string {
	const max = 160
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
