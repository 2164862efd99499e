package attest

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// X509Request is an X.509 registration attempt.
type X509Request struct {
	// Enrollments of the instance the ID scope resolved to.
	Enrollments Enrollments
	// RegistrationID comes from the request path (HTTP) or the MQTT
	// username; it must equal the leaf's subject CN.
	RegistrationID string
	// Chain is what the device sent in the TLS handshake
	// (tls.ConnectionState.PeerCertificates): the leaf first, then the
	// intermediates in any order. The TLS layer must not verify it
	// (tls.RequestClientCert); this is where it is verified.
	Chain []*x509.Certificate
	// Now is the time validity periods are checked against; zero means
	// time.Now().
	Now time.Time
}

// X509 authenticates a device by its certificate chain (§3.3).
//
// The leaf's subject CN must equal the registration id (case-insensitive)
// and the leaf must be inside its validity period (no skew: the server's
// clock is the reference). If an individual
// enrollment exists for the registration id, the leaf must be its primary
// or secondary client certificate (same DER, or same thumbprint when the
// enrollment only has the certificate info). Otherwise each X.509 group's
// anchors (signing certificates, and CA certificates named by
// caReferences that are verified) are tried with crypto/x509: roots = the
// anchor, intermediates = what the device sent, any key usage. The most
// specific group wins: the one whose anchor is closest to the leaf (DPS
// walks up the chain and applies the first enrollment it finds); ties go
// to the first group in Enrollments order.
//
// It returns a Match (possibly Disabled), a refusal (*Error, code
// CodeCertificateUnauthorized) that says which certificate failed and why,
// or a wrapped error of the Enrollments source.
func (a *Attestor) X509(ctx context.Context, req X509Request) (*Match, error) {
	if req.Now.IsZero() {
		req.Now = time.Now()
	}
	leaf, err := checkLeaf(&req)
	if err != nil {
		return nil, err
	}
	ind, err := req.Enrollments.Individual(ctx, req.RegistrationID)
	if err != nil {
		return nil, fmt.Errorf("attest: reading individual enrollment: %w", err)
	}
	groups := func() (*Match, error) { return x509Groups(ctx, &req) }
	if ind == nil {
		return groups()
	}
	m, refusal := matchX509Individual(ind, leaf, req.RegistrationID)
	return individualFirst(ind, m, refusal, groups)
}

// checkLeaf checks presence, subject CN and validity of the leaf.
func checkLeaf(req *X509Request) (*x509.Certificate, error) {
	if len(req.Chain) == 0 || req.Chain[0] == nil {
		return nil, certError(ErrMalformed, "no client certificate was presented")
	}
	for _, c := range req.Chain[1:] {
		if c == nil {
			return nil, certError(ErrMalformed, "the certificate chain contains an empty certificate")
		}
	}
	leaf := req.Chain[0]
	if cn := leaf.Subject.CommonName; !strings.EqualFold(cn, req.RegistrationID) {
		return nil, certError(ErrSubject, "certificate subject CN %q does not match registration id %q", clip(cn), req.RegistrationID)
	}
	if err := checkValidity(leaf, "device certificate "+subject(leaf), req.Now); err != nil {
		return nil, err
	}
	return leaf, nil
}

// checkValidity refuses c outside its validity period; phrase names it.
func checkValidity(c *x509.Certificate, phrase string, now time.Time) *Error {
	switch {
	case now.Before(c.NotBefore):
		return certError(ErrExpired, "%s is not valid before %s", phrase, c.NotBefore.UTC().Format(time.RFC3339))
	case now.After(c.NotAfter):
		return certError(ErrExpired, "%s expired at %s", phrase, c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func matchX509Individual(ind *model.IndividualEnrollment, leaf *x509.Certificate, regID string) (*Match, error) {
	if t := attestationType(&ind.EnrollmentCommon); t != model.AttestationX509 {
		return nil, certError(ErrAttestationType, "the individual enrollment of registration id %q uses %s attestation, not X.509", regID, typeName(t))
	}
	x := ind.Attestation.X509
	if x == nil || x.ClientCertificates == nil {
		return nil, certError(ErrCertificate, "the individual enrollment of registration id %q has no client certificate", regID)
	}
	slot := SlotNone
	switch {
	case certMatches(x.ClientCertificates.Primary, leaf):
		slot = Primary
	case certMatches(x.ClientCertificates.Secondary, leaf):
		slot = Secondary
	default:
		return nil, certError(ErrCertificate, "device certificate %s (SHA-1 thumbprint %s) is neither the primary nor the secondary certificate of the individual enrollment of registration id %q",
			subject(leaf), pki.SHA1Thumbprint(leaf), regID)
	}
	return &Match{
		RegistrationID: regID, AttestationType: model.AttestationX509,
		Individual: ind, KeyUsed: slot, Disabled: isDisabled(&ind.EnrollmentCommon), Certificate: leaf,
	}, nil
}

// certMatches compares by DER when the enrollment holds the certificate,
// else by the thumbprints of its info.
func certMatches(w *model.X509CertificateWithInfo, leaf *x509.Certificate) bool {
	if w == nil {
		return false
	}
	if w.Certificate != "" {
		c, err := pki.ParseCertificate([]byte(w.Certificate))
		return err == nil && bytes.Equal(c.Raw, leaf.Raw)
	}
	if w.Info == nil {
		return false
	}
	if w.Info.SHA256Thumbprint != "" {
		return strings.EqualFold(w.Info.SHA256Thumbprint, pki.SHA256Thumbprint(leaf))
	}
	return w.Info.SHA1Thumbprint != "" && strings.EqualFold(w.Info.SHA1Thumbprint, pki.SHA1Thumbprint(leaf))
}

// anchor is a trust anchor of a group: a signing certificate or a CA
// certificate named by a CA reference.
type anchor struct {
	cert     *x509.Certificate
	group    *model.EnrollmentGroup
	slot     Slot
	caName   string // "" for signing certificates
	verified bool   // signing certificates are always trusted
	err      error  // why verification to this anchor failed
}

// x509Groups finds the most specific group whose anchor verifies the chain.
func x509Groups(ctx context.Context, req *X509Request) (*Match, error) {
	groups, err := req.Enrollments.Groups(ctx)
	if err != nil {
		return nil, fmt.Errorf("attest: reading enrollment groups: %w", err)
	}
	v := newVerifier(req)
	var best *Match
	for _, g := range groups {
		if attestationType(&g.EnrollmentCommon) != model.AttestationX509 || g.Attestation.X509 == nil {
			continue
		}
		anchors, err := v.anchorsOf(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, an := range anchors {
			if m := v.try(an); m != nil && (best == nil || len(m.Chain) < len(best.Chain)) {
				best = m
			}
		}
	}
	if best != nil {
		return best, nil
	}
	return nil, v.diagnose()
}
