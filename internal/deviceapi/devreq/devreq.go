// Package devreq holds what every device front end (HTTPS, MQTT) checks
// and renders the same way, so that a device sees one behaviour whatever
// its transport (spec/dps-protocol.md §1.2, §1.3, §2.3, §2.4):
//
//   - syntax of the ID scope, registration id, operation id and
//     api-version, checked before the engine is called;
//   - the register body (DeviceRegistration): size, JSON, and a body
//     registrationId that must match the authoritative one;
//   - Normalize, which makes an engine answer fit to send to a device.
//
// Every function is pure and safe for concurrent use. Errors are
// *apierr.Error with the DPS error codes the HTTPS front end has always
// used.
package devreq

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
)

// Limits (§1.2, §1.3, §9).
const (
	// DefaultMaxBody is the register body limit: 96 KB, the DPS message
	// limit (§9).
	DefaultMaxBody = 96 << 10
	// DefaultRetryAfter is the Retry-After (seconds) of an "assigning"
	// answer when the engine gave none (§2.4: send 2 or 3).
	DefaultRetryAfter = 2

	// MaxRegistrationIDLen bounds registration ids (§1.2).
	MaxRegistrationIDLen = 128
	// MaxOperationIDLen bounds operation ids; the engine's are far shorter.
	MaxOperationIDLen = 256
	// MaxAPIVersionLen bounds api-version values.
	MaxAPIVersionLen = 64

	scopePrefix       = "0ne" // compared case-insensitively
	maxScopeHexDigits = 32    // real scopes have 8; lenient but bounded
	clipLen           = 200
)

// apiVersionRE is a syntactically valid api-version (§1.3): a date,
// optionally followed by a suffix such as "-preview".
var apiVersionRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-[A-Za-z0-9.]+)?$`)

// CheckAPIVersion accepts an empty api-version (devices always send one;
// §1.3 reserves rejecting a missing one for the service API) and any
// syntactically valid one; anything else is 400001.
func CheckAPIVersion(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > MaxAPIVersionLen || !apiVersionRE.MatchString(v) {
		return apierr.New(apierr.CodeInvalidAPIVersion, "api-version %q is not valid; use e.g. 2019-03-31 or 2021-10-01.", Clip(v))
	}
	return nil
}

// CheckAPIVersionQuery applies CheckAPIVersion to every api-version of a
// raw query string. The parameter name is matched case-insensitively; a
// malformed query is read as far as it parses.
func CheckAPIVersionQuery(rawQuery string) error {
	q, _ := url.ParseQuery(rawQuery)
	for k, vs := range q {
		if !strings.EqualFold(k, "api-version") || len(vs) == 0 {
			continue
		}
		if err := CheckAPIVersion(vs[0]); err != nil {
			return err
		}
	}
	return nil
}

// ValidateScope checks the ID scope syntax (§1.2): "0ne" (any case)
// followed by 1 to 32 hex digits. Real scopes have 8; whether the scope
// exists is the engine's question (404).
func ValidateScope(scope string) error {
	hex := scope[min(len(scope), len(scopePrefix)):]
	ok := len(scope) > len(scopePrefix) && strings.EqualFold(scope[:len(scopePrefix)], scopePrefix) &&
		len(hex) <= maxScopeHexDigits
	for i := 0; ok && i < len(hex); i++ {
		ok = isHex(hex[i])
	}
	if !ok {
		return apierr.New(apierr.CodeBadRequest, "ID scope %q is not valid; an ID scope is \"0ne\" followed by hex digits.", Clip(scope))
	}
	return nil
}

// ValidateRegistrationID checks a registration id (§1.2): 1 to 128
// characters among A-Z a-z 0-9 - . _ :, the last one alphanumeric or '-'
// (the rule enrollment.ValidateID applies on the service API).
func ValidateRegistrationID(id string) error {
	if id == "" || len(id) > MaxRegistrationIDLen {
		return apierr.New(apierr.CodeInvalidRegistration, "Registration id must be 1 to %d characters long.", MaxRegistrationIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return apierr.New(apierr.CodeInvalidRegistration,
				"Registration id %q contains %q; allowed are letters, digits, '-', '.', '_' and ':'.", Clip(id), id[i])
		}
	}
	if last := id[len(id)-1]; !isAlnum(last) && last != '-' {
		return apierr.New(apierr.CodeInvalidRegistration, "Registration id %q must end with a letter, a digit or '-'.", id)
	}
	return nil
}

// ValidateOperationID bounds an operation id. Operation ids are opaque
// (§1.2); ones the engine never issued get its 404. This only refuses
// what no engine issues: empty, over 256 bytes, or holding a control
// character, a space, or one of / ? # & $ (§1.2 keeps ids free of those).
func ValidateOperationID(id string) error {
	ok := id != "" && len(id) <= MaxOperationIDLen
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c > ' ' && c < 0x7f && !strings.ContainsRune("/?#&$", rune(c))
	}
	if !ok {
		return apierr.New(apierr.CodeBadArgument, "Operation id %q is not valid.", Clip(id))
	}
	return nil
}

// CheckBodyRegistrationID refuses (400) a body registrationId that
// differs, ignoring case, from the authoritative one (the HTTPS path, the
// MQTT username): §2.3. A nil body or an empty id passes.
func CheckBodyRegistrationID(body *model.DeviceRegistration, regID string) error {
	if body != nil && body.RegistrationID != "" && !strings.EqualFold(body.RegistrationID, regID) {
		return apierr.New(apierr.CodeBadArgument,
			"Body registrationId %q does not match the registration id %q of the request.", Clip(body.RegistrationID), regID)
	}
	return nil
}

// DecodeRegistration parses a register body that arrived as bytes (MQTT):
// an empty or blank body and "null" give nil (C# sends an empty payload,
// Node a JSON object, §2.3); unknown fields are ignored; a body over max
// bytes (0: DefaultMaxBody) is 413; malformed JSON 400; a registrationId
// other than regID 400.
func DecodeRegistration(body []byte, regID string, max int) (*model.DeviceRegistration, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	if len(body) > max {
		return nil, apierr.New(apierr.CodePayloadTooLarge, "Request body is larger than %d bytes.", max)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	var reg *model.DeviceRegistration
	if err := apierr.DecodeBytes(body, &reg); err != nil {
		return nil, err
	}
	if err := CheckBodyRegistrationID(reg, regID); err != nil {
		return nil, err
	}
	return reg, nil
}

// Clip bounds client-supplied text echoed in error messages and logs.
func Clip(s string) string {
	if len(s) > clipLen {
		return s[:clipLen] + "..."
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isIDChar(c byte) bool { return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == ':' }
