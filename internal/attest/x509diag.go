package attest

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
)

// diagnose explains why no group accepted the chain. It walks up from the
// leaf, through the certificates the device sent, until it reaches an
// anchor some group knows (and reports why that anchor did not verify) or
// a dead end (unknown issuer, self-signed root nobody trusts, invalid
// signature).
func (v *verifier) diagnose() *Error {
	if len(v.tried) == 0 {
		return certError(ErrNoEnrollment, "no individual enrollment or X.509 enrollment group accepts the certificate of registration id %q", v.regID)
	}
	cur := v.leaf
	for i := 0; i <= len(v.sent); i++ {
		if e := v.atAnchor(cur); e != nil {
			return e
		}
		parent, bad, badErr := v.issuerIn(cur)
		if parent == nil {
			return v.deadEnd(cur, bad, badErr)
		}
		if notCA(parent) {
			return v.notCAError(parent)
		}
		cur = parent
	}
	return certError(ErrChain, "the certificate chain of registration id %q does not lead to the signing certificate of an enrollment group or a verified CA certificate", v.regID)
}

// atAnchor reports why cur, issued by a known anchor, was not accepted; it
// returns nil when no anchor issued cur.
func (v *verifier) atAnchor(cur *x509.Certificate) *Error {
	var badSig, unverified *anchor
	var sigErr error
	for _, an := range v.tried {
		if !bytes.Equal(an.cert.RawSubject, cur.RawIssuer) {
			continue
		}
		if err := an.cert.CheckSignature(cur.SignatureAlgorithm, cur.RawTBSCertificate, cur.Signature); err != nil {
			if badSig == nil {
				badSig, sigErr = an, err
			}
			continue
		}
		if !an.verified {
			if unverified == nil {
				unverified = an
			}
			continue
		}
		if an.err != nil {
			return v.explain(an)
		}
	}
	switch {
	case unverified != nil:
		return certError(ErrUnverifiedCA, "%s is issued by %s, which is not verified: complete its proof of possession", v.phrase(cur), v.anchorPhrase(unverified))
	case badSig != nil:
		return certError(ErrChain, "the signature of %s does not verify with the key of %s: %v", v.phrase(cur), v.anchorPhrase(badSig), sigErr)
	}
	return nil
}

// explain turns the crypto/x509 error of a trusted anchor into a message
// naming the certificate at fault.
func (v *verifier) explain(an *anchor) *Error {
	err := an.err
	if errors.Is(err, errLeafIsAnchor) {
		return certError(ErrChain, "%s is itself %s; a device certificate must be issued by it", v.phrase(v.leaf), v.anchorPhrase(an))
	}
	if notCA(an.cert) {
		return v.notCAError(an.cert)
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Cert != nil {
		switch inv.Reason {
		case x509.Expired:
			if e := checkValidity(inv.Cert, v.phrase(inv.Cert), v.now); e != nil {
				return e
			}
		case x509.NotAuthorizedToSign:
			return v.notCAError(inv.Cert)
		}
		return certError(ErrChain, "%s is not valid: %v", v.phrase(inv.Cert), inv)
	}
	return certError(ErrChain, "the certificate chain does not verify up to %s: %v", v.anchorPhrase(an), err)
}

// issuerIn finds cur's issuer among the certificates the device sent: a
// certificate whose subject is cur's issuer and whose key verifies cur's
// signature. bad is a certificate with the right subject but a key that
// does not verify.
func (v *verifier) issuerIn(cur *x509.Certificate) (parent, bad *x509.Certificate, badErr error) {
	for _, c := range v.sent {
		if bytes.Equal(c.Raw, cur.Raw) || !bytes.Equal(c.RawSubject, cur.RawIssuer) {
			continue
		}
		if err := c.CheckSignature(cur.SignatureAlgorithm, cur.RawTBSCertificate, cur.Signature); err != nil {
			bad, badErr = c, err
			continue
		}
		return c, nil, nil
	}
	return nil, bad, badErr
}

func (v *verifier) deadEnd(cur, bad *x509.Certificate, badErr error) *Error {
	switch {
	case bad != nil:
		return certError(ErrChain, "the signature of %s does not verify with the key of %s: %v", v.phrase(cur), v.phrase(bad), badErr)
	case selfSigned(cur):
		return certError(ErrChain, "the chain ends at self-signed %s, which is neither the signing certificate of an enrollment group nor a verified CA certificate", v.phrase(cur))
	}
	return certError(ErrChain, "unknown issuer: %s was issued by %q, which is neither the signing certificate of an enrollment group, a verified CA certificate, nor a certificate the device sent",
		v.phrase(cur), clip(cur.Issuer.String()))
}

// notCA reports what crypto/x509 refuses in an issuer: a v3 certificate
// without basic constraints, or with CA:false.
func notCA(c *x509.Certificate) bool {
	return c.Version == 3 && !c.BasicConstraintsValid || c.BasicConstraintsValid && !c.IsCA
}

func (v *verifier) notCAError(c *x509.Certificate) *Error {
	return certError(ErrChain, "%s issues certificates but is not a CA certificate (basic constraints CA:false or absent)", v.phrase(c))
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// phrase names a certificate of the chain by role and subject.
func (v *verifier) phrase(c *x509.Certificate) string {
	if bytes.Equal(c.Raw, v.leaf.Raw) {
		return "device certificate " + subject(c)
	}
	for _, an := range v.tried {
		if bytes.Equal(an.cert.Raw, c.Raw) {
			return v.anchorPhrase(an)
		}
	}
	return "intermediate certificate " + subject(c)
}

func (v *verifier) anchorPhrase(an *anchor) string {
	if an.caName != "" {
		return fmt.Sprintf("CA certificate %q (%s, %s CA reference of enrollment group %q)", an.caName, subject(an.cert), an.slot, an.group.EnrollmentGroupID)
	}
	return fmt.Sprintf("the %s signing certificate %s of enrollment group %q", an.slot, subject(an.cert), an.group.EnrollmentGroupID)
}

// subject quotes a certificate's subject for messages.
func subject(c *x509.Certificate) string {
	return fmt.Sprintf("%q", clip(c.Subject.String()))
}
