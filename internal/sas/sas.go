// Package sas parses, verifies and builds Shared Access Signature tokens and
// parses connection strings, as the Azure IoT SDKs produce them.
//
// Token wire form (spec/dps-protocol.md §3.1, §6.2):
//
//	SharedAccessSignature sr={resource}&sig={urlenc(base64 HMAC)}&se={unix}&skn={keyName}
//
// Fields may come in any order; skn is optional. The signature covers the sr
// value exactly as it appears in the token (clients differ in how they encode
// it), so verification never recomputes a canonical resource.
//
// Every function here is safe for concurrent use.
package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every token.
const Prefix = "SharedAccessSignature "

// MaxTokenLen bounds the token length accepted by Parse; longer input is
// refused before any work.
const MaxTokenLen = 4096

// DefaultSkew is the clock skew allowed when checking expiry.
const DefaultSkew = 5 * time.Minute

// Errors returned by this package. Messages are safe to show to clients.
var (
	ErrMalformed = errors.New("sas: malformed token")
	ErrExpired   = errors.New("sas: token expired")
	ErrSignature = errors.New("sas: signature mismatch")
	ErrAudience  = errors.New("sas: token audience does not match")
	ErrKeyName   = errors.New("sas: unexpected key name")
	ErrKey       = errors.New("sas: invalid key")
)

// Token is a parsed SAS token. Raw fields keep the exact text received.
type Token struct {
	ResourceRaw string    // sr exactly as received (signed as-is)
	Resource    string    // sr percent-decoded
	Signature   []byte    // decoded HMAC
	ExpiryRaw   string    // se exactly as received (signed as-is)
	Expiry      time.Time // se parsed
	KeyName     string    // skn, "" when absent
}

// Parse parses a token of the form "SharedAccessSignature k=v&k=v...".
// Duplicate or unknown-critical fields, a missing sr, sig or se, or a value
// that does not decode are ErrMalformed.
func Parse(s string) (*Token, error) {
	if len(s) > MaxTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return nil, fmt.Errorf("%w: missing %q prefix", ErrMalformed, strings.TrimSpace(Prefix))
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: field %q has no value", ErrMalformed, truncate(part))
		}
		k = strings.ToLower(k)
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("%w: duplicate field %q", ErrMalformed, k)
		}
		fields[k] = v
	}
	t := &Token{ResourceRaw: fields["sr"], ExpiryRaw: fields["se"]}
	if t.ResourceRaw == "" || fields["sig"] == "" || t.ExpiryRaw == "" {
		return nil, fmt.Errorf("%w: sr, sig and se are required", ErrMalformed)
	}
	var err error
	if t.Resource, err = url.PathUnescape(t.ResourceRaw); err != nil {
		return nil, fmt.Errorf("%w: sr is not valid percent-encoding", ErrMalformed)
	}
	if t.Signature, err = decodeSig(fields["sig"]); err != nil {
		return nil, err
	}
	se, err := url.PathUnescape(t.ExpiryRaw)
	if err != nil {
		return nil, fmt.Errorf("%w: se is not valid percent-encoding", ErrMalformed)
	}
	secs, err := strconv.ParseInt(se, 10, 64)
	if err != nil || secs < 0 {
		return nil, fmt.Errorf("%w: se is not a number of seconds", ErrMalformed)
	}
	t.Expiry = time.Unix(secs, 0)
	if skn, ok := fields["skn"]; ok {
		if t.KeyName, err = url.QueryUnescape(skn); err != nil {
			return nil, fmt.Errorf("%w: skn is not valid percent-encoding", ErrMalformed)
		}
	}
	return t, nil
}

// decodeSig percent-decodes and base64-decodes a signature. A literal '+' is
// kept (PathUnescape), and a '+' turned into a space by a lenient encoder is
// restored.
func decodeSig(raw string) ([]byte, error) {
	s, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: sig is not valid percent-encoding", ErrMalformed)
	}
	s = strings.ReplaceAll(s, " ", "+")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: sig is not a base64 HMAC-SHA256", ErrMalformed)
	}
	return b, nil
}

// CheckExpiry returns ErrExpired when the token expired before now-skew.
func (t *Token) CheckExpiry(now time.Time, skew time.Duration) error {
	if !t.Expiry.After(now.Add(-skew)) {
		return fmt.Errorf("%w at %s", ErrExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return nil
}

// Verify reports whether the token was signed with key (raw bytes, already
// base64-decoded). The comparison is constant-time.
func (t *Token) Verify(key []byte) bool {
	return hmac.Equal(t.Signature, Sign(key, t.ResourceRaw, t.ExpiryRaw))
}

// VerifyBase64 is Verify with a base64 key; an undecodable key never verifies.
func (t *Token) VerifyBase64(key string) bool {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(k) == 0 {
		return false
	}
	return t.Verify(k)
}

// Sign returns HMAC-SHA256(key, resource + "\n" + expiry).
func Sign(key []byte, resource, expiry string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(resource))
	m.Write([]byte{'\n'})
	m.Write([]byte(expiry))
	return m.Sum(nil)
}

// Build returns a token for resource (used verbatim as sr), signed with the
// base64 key, valid until expiry. keyName may be empty.
func Build(resource, keyBase64, keyName string, expiry time.Time) (string, error) {
	key, err := base64.StdEncoding.DecodeString(keyBase64)
	if err != nil || len(key) == 0 {
		return "", fmt.Errorf("%w: key is not base64", ErrKey)
	}
	se := strconv.FormatInt(expiry.Unix(), 10)
	sig := base64.StdEncoding.EncodeToString(Sign(key, resource, se))
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString("sr=" + resource)
	b.WriteString("&sig=" + url.QueryEscape(sig))
	b.WriteString("&se=" + se)
	if keyName != "" {
		b.WriteString("&skn=" + url.QueryEscape(keyName))
	}
	return b.String(), nil
}

// DeriveKey returns the device key of a symmetric-key enrollment group:
// base64(HMAC-SHA256(base64dec(groupKey), registrationID)).
func DeriveKey(groupKeyBase64, registrationID string) (string, error) {
	key, err := base64.StdEncoding.DecodeString(groupKeyBase64)
	if err != nil || len(key) == 0 {
		return "", fmt.Errorf("%w: group key is not base64", ErrKey)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(registrationID))
	return base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
