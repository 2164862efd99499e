package httpfront

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
)

// apiVersionRE is a syntactically valid api-version (§1.3): a date,
// optionally followed by a suffix such as "-preview".
var apiVersionRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-[A-Za-z0-9.]+)?$`)

// checkAPIVersion accepts any syntactically valid api-version and a
// missing or empty one (devices always send it; §1.3 reserves rejecting a
// missing one for the service API). The parameter name is matched
// case-insensitively; a malformed query is read as far as it parses.
func checkAPIVersion(rawQuery string) error {
	q, _ := url.ParseQuery(rawQuery)
	for k, vs := range q {
		if !strings.EqualFold(k, queryAPIVersion) || len(vs) == 0 || vs[0] == "" {
			continue
		}
		if v := vs[0]; len(v) > maxAPIVersionLen || !apiVersionRE.MatchString(v) {
			return apierr.New(apierr.CodeInvalidAPIVersion, "api-version %q is not valid; use e.g. 2019-03-31 or 2021-10-01.", clip(v))
		}
	}
	return nil
}

// validateScope checks the ID scope syntax (§1.2): "0ne" (any case)
// followed by 1 to 32 hex digits. Real scopes have 8; whether the scope
// exists is the engine's question (404).
func validateScope(scope string) error {
	hex := scope[min(len(scope), len(scopePrefix)):]
	ok := len(scope) > len(scopePrefix) && strings.EqualFold(scope[:len(scopePrefix)], scopePrefix) &&
		len(hex) <= maxScopeHexDigits
	for i := 0; ok && i < len(hex); i++ {
		ok = isHex(hex[i])
	}
	if !ok {
		return apierr.New(apierr.CodeBadRequest, "ID scope %q is not valid; an ID scope is \"0ne\" followed by hex digits.", clip(scope))
	}
	return nil
}

// validateRegistrationID checks a registration id (§1.2): 1 to 128
// characters among A-Z a-z 0-9 - . _ :, the last one alphanumeric or '-'
// (the rule enrollment.ValidateID applies on the service API).
func validateRegistrationID(id string) error {
	if id == "" || len(id) > maxRegistrationIDLen {
		return apierr.New(apierr.CodeInvalidRegistration, "Registration id must be 1 to %d characters long.", maxRegistrationIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return apierr.New(apierr.CodeInvalidRegistration,
				"Registration id %q contains %q; allowed are letters, digits, '-', '.', '_' and ':'.", clip(id), id[i])
		}
	}
	if last := id[len(id)-1]; !isAlnum(last) && last != '-' {
		return apierr.New(apierr.CodeInvalidRegistration, "Registration id %q must end with a letter, a digit or '-'.", id)
	}
	return nil
}

// validateOperationID bounds an operation id. Operation ids are opaque
// (§1.2); ones the engine never issued get its 404. This only refuses
// what no engine issues: empty, over 256 bytes, or holding a control
// character, a space, or one of / ? # & $ (§1.2 keeps ids free of those).
func validateOperationID(id string) error {
	ok := id != "" && len(id) <= maxOperationIDLen
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c > ' ' && c < 0x7f && !strings.ContainsRune("/?#&$", rune(c))
	}
	if !ok {
		return apierr.New(apierr.CodeBadArgument, "Operation id %q is not valid.", clip(id))
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isIDChar(c byte) bool { return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == ':' }
