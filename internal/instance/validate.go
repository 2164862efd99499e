package instance

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Name limits (ARM: ^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{2,49}[a-zA-Z0-9]$).
const (
	minNameLen = 3
	maxNameLen = 50
	// maxCertNameLen bounds certificate names (§8.4).
	maxCertNameLen = 256
	// Tag limits (ARM).
	maxTags        = 50
	maxTagKeyLen   = 512
	maxTagValueLen = 256
	// Key limits: generated keys have genKeyLen bytes; given keys must
	// decode to minKeyLen..maxKeyLen bytes.
	genKeyLen = 32
	minKeyLen = 16
	maxKeyLen = 64
	// maxKeyNameLen bounds policy names (ARM allows 64).
	maxKeyNameLen = 64
)

// ValidateName checks an instance name against the ARM pattern
// ^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{2,49}[a-zA-Z0-9]$ (RE2 has no lookahead).
func ValidateName(name string) error {
	if len(name) < minNameLen || len(name) > maxNameLen {
		return errorf(ErrInvalid, "name %q must be %d to %d characters long", clip(name), minNameLen, maxNameLen)
	}
	digits := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isAlnum(c):
			digits = digits && c >= '0' && c <= '9'
		case c == '-':
			digits = false
		default:
			return errorf(ErrInvalid, "name %q may only contain letters, digits and '-'", clip(name))
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return errorf(ErrInvalid, "name %q must not start or end with '-'", name)
	}
	if digits {
		return errorf(ErrInvalid, "name %q must not be all digits", name)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// clip shortens user input quoted in messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ValidateCertificateName checks a certificate name: 1 to 256 letters,
// digits, '-', '.' or '_' (§8.4).
func ValidateCertificateName(name string) error {
	return validateName("certificate", name, maxCertNameLen)
}

// validateKeyName checks a policy name: 1 to 64 letters, digits, '-', '.' or '_'.
func validateKeyName(name string) error { return validateName("policy", name, maxKeyNameLen) }

// validateName checks the name of a what ("certificate", "policy"): 1 to
// max letters, digits, '-', '.' or '_'.
func validateName(what, name string, max int) error {
	if name == "" || len(name) > max {
		return errorf(ErrInvalid, "%s name must be 1 to %d characters long", what, max)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' {
			return errorf(ErrInvalid, "%s name %q may only contain letters, digits, '-', '.' and '_'", what, clip(name))
		}
	}
	return nil
}

// allRightsOrder is every right the ARM enum knows, in canonical order.
var allRightsOrder = append(append([]string{}, model.AllRights...), model.RightDeviceConnect)

// ParseRights parses a comma-separated, case-insensitive list of rights
// (spec §6.2) and returns it in canonical form: canonical spelling and
// order, joined by ", ". Unknown, empty and duplicate entries are errors.
func ParseRights(s string) (string, error) {
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		r := canonicalRight(p)
		if r == "" {
			return "", errorf(ErrInvalid, "unknown right %q; rights are %s", clip(p), strings.Join(allRightsOrder, ", "))
		}
		if seen[r] {
			return "", errorf(ErrInvalid, "right %s is listed twice", r)
		}
		seen[r] = true
	}
	if len(seen) == 0 {
		return "", errorf(ErrInvalid, "rights must name at least one of %s", strings.Join(allRightsOrder, ", "))
	}
	var out []string
	for _, r := range allRightsOrder {
		if seen[r] {
			out = append(out, r)
		}
	}
	return strings.Join(out, ", "), nil
}

func canonicalRight(s string) string {
	for _, r := range allRightsOrder {
		if strings.EqualFold(r, s) {
			return r
		}
	}
	return ""
}

// validateKey checks a given base64 key (16 to 64 bytes).
func validateKey(policy, which, k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return errorf(ErrInvalid, "policy %s: %s key is not valid base64", policy, which)
	}
	if len(b) < minKeyLen || len(b) > maxKeyLen {
		return errorf(ErrInvalid, "policy %s: %s key must decode to %d to %d bytes, not %d", policy, which, minKeyLen, maxKeyLen, len(b))
	}
	return nil
}

// validateTags checks ARM tag limits.
func validateTags(tags map[string]string) error {
	if len(tags) > maxTags {
		return errorf(ErrInvalid, "at most %d tags are allowed", maxTags)
	}
	for k, v := range tags {
		if k == "" || len(k) > maxTagKeyLen || len(v) > maxTagValueLen {
			return errorf(ErrInvalid, "tag %q: names are 1 to %d characters, values up to %d", clip(k), maxTagKeyLen, maxTagValueLen)
		}
	}
	return nil
}

// canonicalAllocation returns the ARM spelling of an instance allocation
// policy, "" for an empty one, or an error.
func canonicalAllocation(p string) (string, error) {
	for _, a := range []string{model.InstanceAllocationHashed, model.InstanceAllocationGeoLatency, model.InstanceAllocationStatic} {
		if strings.EqualFold(a, p) {
			return a, nil
		}
	}
	if p == "" {
		return "", nil
	}
	return "", errorf(ErrInvalid, "allocationPolicy %q is not one of Hashed, GeoLatency, Static", clip(p))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (Go 1.24+)
	return b
}

// NewKey returns a random 32-byte base64 key.
func NewKey() string { return base64.StdEncoding.EncodeToString(randomBytes(genKeyLen)) }

// newEtag returns a random etag shaped like Azure's ("AAAAAAADGk=").
func newEtag() string { return base64.StdEncoding.EncodeToString(randomBytes(8)) }

// newIDScope returns "0ne" + 8 upper-case hex digits.
func newIDScope() string { return "0ne" + strings.ToUpper(hex.EncodeToString(randomBytes(4))) }

// newVerificationCode returns a proof-of-possession code: 48 upper-case hex
// digits (fits a certificate CN, which is at most 64 characters).
func newVerificationCode() string { return strings.ToUpper(hex.EncodeToString(randomBytes(24))) }

// EtagMatches reports whether an If-Match value matches etag: "*" matches
// any; quotes and a weak "W/" prefix are ignored; a comma-separated list
// matches when any entry does.
func EtagMatches(ifMatch, etag string) bool {
	for _, e := range strings.Split(ifMatch, ",") {
		e = strings.TrimSpace(e)
		if e == "*" {
			return true
		}
		e = strings.TrimPrefix(e, "W/")
		if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
			e = e[1 : len(e)-1]
		}
		if e != "" && e == etag {
			return true
		}
	}
	return false
}

// checkIfMatch returns ErrPrecondition when ifMatch is set and does not
// match etag.
func checkIfMatch(what, ifMatch, etag string) error {
	if ifMatch != "" && !EtagMatches(ifMatch, etag) {
		return errorf(ErrPrecondition, "%s has etag %q, not the one given in If-Match", what, etag)
	}
	return nil
}

// requireIfMatch is checkIfMatch for operations where If-Match is required.
func requireIfMatch(what, ifMatch, etag string) error {
	if strings.TrimSpace(ifMatch) == "" {
		return errorf(ErrInvalid, "the If-Match header is required to change %s (its etag is %q; \"*\" matches any)", what, etag)
	}
	return checkIfMatch(what, ifMatch, etag)
}
