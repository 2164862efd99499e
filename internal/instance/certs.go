package instance

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
)

// CertSpec is a certificate upload (ARM PUT .../certificates/{name}).
type CertSpec struct {
	// Certificate is PEM text, base64 DER, or base64 of PEM text (what the
	// ARM SDKs send for a .pem file).
	Certificate string
	// IsVerified marks the certificate verified without proof of
	// possession (self-attested, as current Azure allows). Nil keeps the
	// current state when the certificate is unchanged, else false.
	IsVerified *bool
	// IfMatch is required to replace an existing certificate; ignored on create.
	IfMatch string
}

// ParseCertificateText parses a certificate given as PEM, base64 DER or
// base64 of PEM text.
func ParseCertificateText(text string) (*x509.Certificate, error) {
	c, err := pki.ParseCertificate([]byte(text))
	if err == nil {
		return c, nil
	}
	compact := strings.Join(strings.Fields(text), "")
	if b, derr := base64.StdEncoding.DecodeString(compact); derr == nil && bytes.Contains(b, []byte("-----BEGIN")) {
		if c2, err2 := pki.ParseCertificate(b); err2 == nil {
			return c2, nil
		}
	}
	return nil, err
}

func parseCertField(what, text string) (*x509.Certificate, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errorf(ErrInvalid, "%s is required (PEM or base64 DER)", what)
	}
	c, err := ParseCertificateText(text)
	if err != nil {
		return nil, errorf(ErrInvalid, "%s: %s", what, strings.TrimPrefix(err.Error(), "pki: "))
	}
	return c, nil
}

// PutCertificate uploads CA certificate certName, or replaces it (If-Match
// required then). At most MaxCertificates per instance. created says
// whether it is new.
func (m *Manager) PutCertificate(ctx context.Context, name, certName string, s CertSpec) (c model.Certificate, created bool, err error) {
	if err := ValidateCertificateName(certName); err != nil {
		return c, false, err
	}
	x, err := parseCertField("certificate", s.Certificate)
	if err != nil {
		return c, false, err
	}
	der := base64.StdEncoding.EncodeToString(x.Raw)
	err = m.updateCert(ctx, name, certName, func(tx *store.Tx, key string, cur *model.Certificate, exists bool) error {
		created = !exists
		now := m.now().UTC()
		if !exists {
			if err := m.checkCertCount(ctx, CanonicalName(name)); err != nil {
				return err
			}
			c = model.Certificate{Name: certName, Certificate: der, Subject: pki.InfoOf(x).SubjectName,
				Thumbprint: pki.SHA1Thumbprint(x), Expiry: x.NotAfter.UTC(), IsVerified: s.IsVerified != nil && *s.IsVerified,
				Etag: newEtag(), Created: now, Updated: now}
			return tx.Put(key, c)
		}
		if err := requireIfMatch("certificate "+cur.Name, s.IfMatch, cur.Etag); err != nil {
			return err
		}
		c = *cur
		if cur.Certificate == der && (s.IsVerified == nil || *s.IsVerified == cur.IsVerified) {
			return nil
		}
		if cur.Certificate != der {
			c.Certificate, c.Subject, c.Thumbprint, c.Expiry = der, pki.InfoOf(x).SubjectName, pki.SHA1Thumbprint(x), x.NotAfter.UTC()
			c.IsVerified, c.VerificationCode = false, ""
		}
		if s.IsVerified != nil {
			c.IsVerified = *s.IsVerified
		}
		c.Etag, c.Updated = newEtag(), now
		return tx.Put(key, c)
	})
	return c, created, err
}

func (m *Manager) checkCertCount(ctx context.Context, name string) error {
	n, err := m.st.Count(ctx, store.KindPrefix(name, store.KindCertificate))
	if err != nil {
		return err
	}
	if n >= MaxCertificates {
		return errorf(ErrLimit, "instance %s already has %d CA certificates, the maximum", name, MaxCertificates)
	}
	return nil
}

// updateCert runs fn on certificate certName of instance name in a fenced
// transaction. cur is the stored certificate when exists.
func (m *Manager) updateCert(ctx context.Context, name, certName string, fn func(tx *store.Tx, key string, cur *model.Certificate, exists bool) error) error {
	name, err := resolve(name)
	if err != nil {
		return err
	}
	err = m.st.Update(ctx, name, func(tx *store.Tx) error {
		key := store.Key(name, store.KindCertificate, certName)
		var cur model.Certificate
		ok, err := tx.Get(key, &cur)
		if err != nil {
			return err
		}
		return fn(tx, key, &cur, ok)
	})
	return mapStoreErr(err, "instance %q", name)
}

// existingCert is updateCert for operations on an existing certificate.
func (m *Manager) existingCert(ctx context.Context, name, certName string, fn func(tx *store.Tx, key string, cur *model.Certificate) error) error {
	return m.updateCert(ctx, name, certName, func(tx *store.Tx, key string, cur *model.Certificate, exists bool) error {
		if !exists {
			return errorf(ErrNotFound, "certificate %q of instance %s not found", clip(certName), CanonicalName(name))
		}
		return fn(tx, key, cur)
	})
}

// Certificate returns certificate certName; a non-empty ifMatch must match.
func (m *Manager) Certificate(ctx context.Context, name, certName, ifMatch string) (model.Certificate, error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return model.Certificate{}, err
	}
	name = in.Name
	var c model.Certificate
	ok, err := m.st.Get(ctx, store.Key(name, store.KindCertificate, certName), &c)
	if err != nil {
		return c, err
	}
	if !ok {
		return c, errorf(ErrNotFound, "certificate %q of instance %s not found", clip(certName), name)
	}
	return c, checkIfMatch("certificate "+c.Name, ifMatch, c.Etag)
}

// Certificates returns the CA certificates of an instance, in name order.
func (m *Manager) Certificates(ctx context.Context, name string) ([]model.Certificate, error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	name = in.Name
	p, err := m.st.List(ctx, store.KindPrefix(name, store.KindCertificate), "", MaxCertificates+1)
	if err != nil {
		return nil, err
	}
	out := make([]model.Certificate, 0, len(p.Values))
	for _, v := range p.Values {
		var c model.Certificate
		if err := json.Unmarshal(v, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// DeleteCertificate removes certificate certName; ifMatch is required.
func (m *Manager) DeleteCertificate(ctx context.Context, name, certName, ifMatch string) error {
	return m.existingCert(ctx, name, certName, func(tx *store.Tx, key string, cur *model.Certificate) error {
		if err := requireIfMatch("certificate "+cur.Name, ifMatch, cur.Etag); err != nil {
			return err
		}
		tx.Delete(key)
		return nil
	})
}

// GenerateVerificationCode gives certificate certName a new random
// proof-of-possession code (ifMatch required) and returns the certificate,
// whose VerificationCode holds it.
func (m *Manager) GenerateVerificationCode(ctx context.Context, name, certName, ifMatch string) (model.Certificate, error) {
	var c model.Certificate
	err := m.existingCert(ctx, name, certName, func(tx *store.Tx, key string, cur *model.Certificate) error {
		if err := requireIfMatch("certificate "+cur.Name, ifMatch, cur.Etag); err != nil {
			return err
		}
		c = *cur
		c.VerificationCode, c.Etag, c.Updated = newVerificationCode(), newEtag(), m.now().UTC()
		return tx.Put(key, c)
	})
	return c, err
}

// VerifyCertificate completes proof of possession (ifMatch required):
// proof must be a certificate whose subject CN is the verification code and
// which is signed by the CA certificate's key. The certificate becomes
// verified and the code is spent.
func (m *Manager) VerifyCertificate(ctx context.Context, name, certName, ifMatch, proof string) (model.Certificate, error) {
	px, err := parseCertField("verification certificate", proof)
	if err != nil {
		return model.Certificate{}, err
	}
	var c model.Certificate
	err = m.existingCert(ctx, name, certName, func(tx *store.Tx, key string, cur *model.Certificate) error {
		if err := requireIfMatch("certificate "+cur.Name, ifMatch, cur.Etag); err != nil {
			return err
		}
		ca, err := pki.ParseCertificate([]byte(cur.Certificate))
		if err != nil {
			return err
		}
		if cur.VerificationCode == "" {
			return errorf(ErrInvalid, "certificate %s has no verification code; generate one first", cur.Name)
		}
		if err := pki.VerifyProofOfPossession(ca, px, cur.VerificationCode); err != nil {
			return errorf(ErrInvalid, "proof of possession failed: %v", err)
		}
		c = *cur
		c.IsVerified, c.VerificationCode, c.Etag, c.Updated = true, "", newEtag(), m.now().UTC()
		return tx.Put(key, c)
	})
	return c, err
}
