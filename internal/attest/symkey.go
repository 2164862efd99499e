package attest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// KeyNameRegistration is the only skn a device token may carry (§3.1).
const KeyNameRegistration = "registration"

// SASRequest is a symmetric-key registration attempt.
type SASRequest struct {
	// Enrollments of the instance the ID scope resolved to.
	Enrollments Enrollments
	// IDScope and RegistrationID come from the request path (HTTP) or the
	// MQTT username, never from the token.
	IDScope        string
	RegistrationID string
	// Token is the whole "SharedAccessSignature sr=...&sig=...&se=..."
	// value (HTTP Authorization header or MQTT password).
	Token string
	// Now is the time expiry is checked against; zero means time.Now().
	Now time.Time
}

// SymmetricKey authenticates a device holding a SAS token (§3.1, §3.2).
//
// The token is parsed, its expiry checked (with the Attestor's skew), its
// decoded sr compared case-insensitively with
// {IDScope}/registrations/{RegistrationID} (so the unencoded, %2F and %2f
// forms all pass), and its skn, when present, must be "registration". The
// signature is then checked against the individual enrollment of the
// registration id (primary key, then secondary) if there is one, else
// against the keys derived from each symmetric-key group's primary and
// secondary keys. A group key itself is never accepted.
//
// It returns a Match (possibly Disabled), a refusal (*Error, code
// CodeSASUnauthorized), or a wrapped error of the Enrollments source.
func (a *Attestor) SymmetricKey(ctx context.Context, req SASRequest) (*Match, error) {
	tok, err := a.checkToken(&req)
	if err != nil {
		return nil, err
	}
	ind, err := req.Enrollments.Individual(ctx, req.RegistrationID)
	if err != nil {
		return nil, fmt.Errorf("attest: reading individual enrollment: %w", err)
	}
	groups := func() (*Match, error) { return a.sasGroups(ctx, &req, tok) }
	if ind == nil {
		return groups()
	}
	m, refusal := matchSASIndividual(ind, tok, req.RegistrationID)
	return individualFirst(ind, m, refusal, groups)
}

// checkToken parses the token and checks everything but the signature.
func (a *Attestor) checkToken(req *SASRequest) (*sas.Token, error) {
	tok, err := sas.Parse(req.Token)
	if err != nil {
		msg := strings.Replace(strings.TrimPrefix(err.Error(), "sas: "), "malformed token", "malformed SAS token", 1)
		return nil, &Error{Code: CodeSASUnauthorized, Message: msg, Cause: fmt.Errorf("%w: %w", ErrMalformed, err)}
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	if tok.CheckExpiry(now, a.skew()) != nil {
		return nil, sasError(ErrExpired, "token expired at %s", tok.Expiry.UTC().Format(time.RFC3339))
	}
	want := req.IDScope + "/registrations/" + req.RegistrationID
	if !strings.EqualFold(tok.Resource, want) {
		return nil, sasError(ErrAudience, "token audience %q does not match %q", clip(tok.Resource), want)
	}
	if tok.KeyName != "" && !strings.EqualFold(tok.KeyName, KeyNameRegistration) {
		return nil, sasError(ErrKeyName, "token key name (skn) %q is not %q", clip(tok.KeyName), KeyNameRegistration)
	}
	return tok, nil
}

// signatureMessage is the same whether or not an individual enrollment
// exists, so a refusal does not reveal which registration ids are enrolled
// (the Cause tells ErrSignature from ErrNoEnrollment in the logs).
func signatureMessage(regID string) string {
	return fmt.Sprintf("token signature does not verify with the key of any enrollment for registration id %q", regID)
}

func matchSASIndividual(ind *model.IndividualEnrollment, tok *sas.Token, regID string) (*Match, error) {
	if t := attestationType(&ind.EnrollmentCommon); t != model.AttestationSymmetricKey || ind.Attestation.SymmetricKey == nil {
		return nil, sasError(ErrAttestationType, "the individual enrollment of registration id %q uses %s attestation, not a symmetric key", regID, typeName(t))
	}
	k := ind.Attestation.SymmetricKey
	slot := SlotNone
	switch {
	case k.PrimaryKey != "" && tok.VerifyBase64(k.PrimaryKey):
		slot = Primary
	case k.SecondaryKey != "" && tok.VerifyBase64(k.SecondaryKey):
		slot = Secondary
	default:
		return nil, sasError(ErrSignature, "%s", signatureMessage(regID))
	}
	return &Match{
		RegistrationID: regID, AttestationType: model.AttestationSymmetricKey,
		Individual: ind, KeyUsed: slot, Disabled: isDisabled(&ind.EnrollmentCommon),
	}, nil
}

// sasGroups tries every symmetric-key group in order.
func (a *Attestor) sasGroups(ctx context.Context, req *SASRequest, tok *sas.Token) (*Match, error) {
	groups, err := req.Enrollments.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("attest: reading enrollment groups: %w", err)
	}
	mac := newMacer(req.RegistrationID, tok)
	var misses []cacheEntry // derived here, cached only if the device authenticates
	for _, g := range groups {
		if attestationType(&g.EnrollmentCommon) != model.AttestationSymmetricKey || g.Attestation.SymmetricKey == nil {
			continue
		}
		keys, cached := a.groupKeys(g, req.RegistrationID, mac)
		if !cached && a.Cache != nil && g.Etag != "" {
			misses = append(misses, cacheEntry{cacheKey{g.EnrollmentGroupID, g.Etag, req.RegistrationID}, keys})
		}
		if slot := mac.verify(&keys, tok); slot != SlotNone {
			a.Cache.putAll(misses)
			return &Match{
				RegistrationID: req.RegistrationID, AttestationType: model.AttestationSymmetricKey,
				Group: g, KeyUsed: slot, Disabled: isDisabled(&g.EnrollmentCommon),
			}, nil
		}
	}
	return nil, sasError(ErrNoEnrollment, "%s", signatureMessage(req.RegistrationID))
}

// derivedKeys are a group's two device keys for one registration id.
type derivedKeys struct {
	primary, secondary [sha256.Size]byte
	has                uint8 // bit 0: primary valid, bit 1: secondary valid
}

// groupKeys returns g's derived keys for regID, from the cache when there
// is one and g has an etag (the etag changes on every write of the group).
func (a *Attestor) groupKeys(g *model.EnrollmentGroup, regID string, mac *macer) (k derivedKeys, cached bool) {
	if a.Cache != nil && g.Etag != "" {
		if k, ok := a.Cache.get(cacheKey{g.EnrollmentGroupID, g.Etag, regID}); ok {
			return k, true
		}
	}
	sk := g.Attestation.SymmetricKey
	if mac.derive(&k.primary, sk.PrimaryKey) {
		k.has |= 1
	}
	if mac.derive(&k.secondary, sk.SecondaryKey) {
		k.has |= 2
	}
	return k, false
}

// macer computes HMAC-SHA256 for one request's group loop, reusing one
// hash and fixed buffers, so trying 100 groups costs no allocation per
// group (the same construction as crypto/hmac, RFC 2104). Not safe for
// concurrent use.
type macer struct {
	h          hash.Hash
	regID, msg []byte // derivation input; signed string sr + "\n" + se
	ipad, opad [sha256.BlockSize]byte
	key        [96]byte          // decoded group keys of up to 64 bytes (DPS's maximum)
	dk         [sha256.Size]byte // derived key being verified
	sum        [sha256.Size]byte
}

func newMacer(regID string, tok *sas.Token) *macer {
	msg := make([]byte, 0, len(tok.ResourceRaw)+1+len(tok.ExpiryRaw))
	msg = append(append(append(msg, tok.ResourceRaw...), '\n'), tok.ExpiryRaw...)
	return &macer{h: sha256.New(), regID: []byte(regID), msg: msg}
}

// mac sets m.sum to HMAC-SHA256(key, data).
func (m *macer) mac(key, data []byte) {
	if len(key) > sha256.BlockSize {
		m.h.Reset()
		m.h.Write(key)
		key = m.h.Sum(m.sum[:0])
	}
	clear(m.ipad[:])
	copy(m.ipad[:], key)
	m.opad = m.ipad
	for i := range m.ipad {
		m.ipad[i] ^= 0x36
		m.opad[i] ^= 0x5c
	}
	m.h.Reset()
	m.h.Write(m.ipad[:])
	m.h.Write(data)
	m.h.Sum(m.sum[:0])
	m.h.Reset()
	m.h.Write(m.opad[:])
	m.h.Write(m.sum[:])
	m.h.Sum(m.sum[:0])
}

// derive writes HMAC-SHA256(base64dec(groupKey), regID) into dst: the raw
// form of sas.DeriveKey. It reports false for an empty or undecodable key.
func (m *macer) derive(dst *[sha256.Size]byte, groupKey string) bool {
	if groupKey == "" {
		return false
	}
	raw := m.key[:]
	if n := base64.StdEncoding.DecodedLen(len(groupKey)); n > len(raw) {
		raw = make([]byte, n)
	}
	n, err := base64.StdEncoding.Decode(raw, []byte(groupKey))
	if err != nil || n == 0 {
		return false
	}
	m.mac(raw[:n], m.regID)
	*dst = m.sum
	return true
}

// verify checks the token's signature against both derived keys, in
// constant time.
func (m *macer) verify(k *derivedKeys, tok *sas.Token) Slot {
	if k.has&1 != 0 {
		if m.dk = k.primary; m.verifyDK(tok) {
			return Primary
		}
	}
	if k.has&2 != 0 {
		if m.dk = k.secondary; m.verifyDK(tok) {
			return Secondary
		}
	}
	return SlotNone
}

func (m *macer) verifyDK(tok *sas.Token) bool {
	m.mac(m.dk[:], m.msg)
	return hmac.Equal(tok.Signature, m.sum[:])
}

func typeName(t string) string {
	switch t {
	case "":
		return "no"
	case model.AttestationSymmetricKey:
		return "symmetric key"
	case model.AttestationX509:
		return "X.509"
	case model.AttestationTPM:
		return "TPM"
	}
	return fmt.Sprintf("%q", t)
}
