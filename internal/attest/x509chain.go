package attest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// errLeafIsAnchor: a device certificate must be issued by a group's
// certificate, not be it (the X.509 analogue of refusing a group key).
var errLeafIsAnchor = errors.New("the device certificate is itself the enrollment group's certificate")

// verifier verifies one request's chain against group anchors and keeps
// what it tried for the diagnosis. It lives for one request.
type verifier struct {
	src     Enrollments
	regID   string
	leaf    *x509.Certificate
	sent    []*x509.Certificate // intermediates the device sent
	now     time.Time
	inter   *x509.CertPool
	cas     map[string]caEntry                 // CA certificates looked up by name
	results map[*x509.Certificate]verifyResult // per anchor certificate
	tried   []*anchor                          // every anchor of every X.509 group
}

type caEntry struct {
	cert     *x509.Certificate
	verified bool
}

type verifyResult struct {
	chain []*x509.Certificate
	err   error
}

func newVerifier(req *X509Request) *verifier {
	v := &verifier{
		src: req.Enrollments, regID: req.RegistrationID, leaf: req.Chain[0], sent: req.Chain[1:],
		now: req.Now, inter: x509.NewCertPool(),
		cas: map[string]caEntry{}, results: map[*x509.Certificate]verifyResult{},
	}
	for _, c := range v.sent {
		v.inter.AddCert(c)
	}
	return v
}

// anchorsOf returns g's anchors: signing certificates (always trusted) and
// the CA certificates its caReferences name (trusted when verified). A
// reference to a CA certificate that no longer exists is skipped.
func (v *verifier) anchorsOf(ctx context.Context, g *model.EnrollmentGroup) ([]*anchor, error) {
	x := g.Attestation.X509
	var out []*anchor
	if sc := x.SigningCertificates; sc != nil {
		out = appendSigning(out, g, sc.Primary, Primary)
		out = appendSigning(out, g, sc.Secondary, Secondary)
	}
	if r := x.CAReferences; r != nil {
		for _, ref := range [...]struct {
			name string
			slot Slot
		}{{r.Primary, Primary}, {r.Secondary, Secondary}} {
			if ref.name == "" {
				continue
			}
			e, err := v.ca(ctx, ref.name)
			if err != nil {
				return nil, err
			}
			if e.cert != nil {
				out = append(out, &anchor{cert: e.cert, group: g, slot: ref.slot, caName: ref.name, verified: e.verified})
			}
		}
	}
	v.tried = append(v.tried, out...)
	return out, nil
}

func appendSigning(out []*anchor, g *model.EnrollmentGroup, w *model.X509CertificateWithInfo, slot Slot) []*anchor {
	if w == nil || w.Certificate == "" {
		return out
	}
	c, err := pki.ParseCertificate([]byte(w.Certificate))
	if err != nil {
		return out // validated on write; an unreadable certificate trusts nothing
	}
	return append(out, &anchor{cert: c, group: g, slot: slot, verified: true})
}

func (v *verifier) ca(ctx context.Context, name string) (caEntry, error) {
	if e, ok := v.cas[name]; ok {
		return e, nil
	}
	cert, verified, err := v.src.CACertificate(ctx, name)
	if err != nil {
		return caEntry{}, fmt.Errorf("attest: reading CA certificate %q: %w", name, err)
	}
	e := caEntry{cert: cert, verified: verified}
	v.cas[name] = e
	return e, nil
}

// try verifies the chain to a trusted anchor and returns the match.
func (v *verifier) try(an *anchor) *Match {
	if !an.verified {
		return nil
	}
	r := v.verify(an.cert)
	if an.err = r.err; r.err != nil {
		return nil
	}
	return &Match{
		RegistrationID: v.regID, AttestationType: model.AttestationX509,
		Group: an.group, KeyUsed: an.slot, Disabled: isDisabled(&an.group.EnrollmentCommon),
		Certificate: v.leaf, SigningCertificate: an.cert, CAName: an.caName, Chain: r.chain,
	}
}

// verify runs crypto/x509 with root as the only root and returns the
// shortest chain.
func (v *verifier) verify(root *x509.Certificate) verifyResult {
	if r, ok := v.results[root]; ok {
		return r
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	chains, err := v.leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: v.inter, CurrentTime: v.now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	var r verifyResult
	switch {
	case err != nil:
		r.err = err
	default:
		r.chain = chains[0]
		for _, c := range chains[1:] {
			if len(c) < len(r.chain) {
				r.chain = c
			}
		}
		if len(r.chain) < 2 {
			r = verifyResult{err: errLeafIsAnchor}
		}
	}
	v.results[root] = r
	return r
}
