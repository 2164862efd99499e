package httpfront

import "github.com/opendps/opendps/internal/deviceapi/devreq"

// Wire values of the DPS device API over HTTPS. References:
//   - spec/dps-protocol.md §1.2: ID scope and registration id formats;
//   - §1.3: api-version;
//   - §2.1: routes; §2.2: request headers; §2.3: register body;
//   - §2.4: responses (202 on register, Retry-After, Location);
//   - §2.7: error shape (apierr);
//   - spec/wire-captures.md §3: what the Node SDK sends and needs.

// Path segments (§2.1), matched case-insensitively:
//
//	PUT  /{idScope}/registrations/{registrationId}/register
//	GET  /{idScope}/registrations/{registrationId}/operations/{operationId}
//	POST /{idScope}/registrations/{registrationId}
const (
	segRegistrations = "registrations"
	segRegister      = "register"
	segOperations    = "operations"
)

// Query parameters (§1.3, §2.1): api-version (checked by devreq). The
// other one devices send, forceRegistration=true, is accepted and
// ignored: every register call re-evaluates the registration (§2.1) and
// engine.Request has no field for it.

// Headers (§2.2, §2.4).
const (
	headerAuthorization   = "Authorization"
	headerClientRequestID = "Request-Id" // sent by the Node SDK; logged only
	headerRetryAfter      = "Retry-After"
	headerLocation        = "Location"
	headerRequestID       = "x-ms-request-id"
	headerAllow           = "Allow"
)

// Transport and scheme names.
const (
	transportHTTPS = "https" // engine.Request.Transport
	schemeHTTPS    = "https" // Location: the device API is HTTPS only (§1.1)
)

// Limits (§1.2, §9).
const (
	// DefaultMaxBody is the request body limit when Config.MaxBody is 0:
	// 96 KB, the DPS message limit.
	DefaultMaxBody = devreq.DefaultMaxBody
	// DefaultRetryAfter is the Retry-After (seconds) sent with an
	// "assigning" answer when the engine gave none (§2.4: send 2 or 3).
	DefaultRetryAfter = devreq.DefaultRetryAfter
)
