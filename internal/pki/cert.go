package pki

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrCertificate is returned for certificate text that does not parse.
var ErrCertificate = errors.New("pki: invalid certificate")

// MaxCertificateLen bounds certificate text accepted by ParseCertificate.
const MaxCertificateLen = 64 << 10

// ParseCertificate parses one certificate given as PEM, or as base64 DER
// (what the C# SDK and ARM send), or as raw DER.
func ParseCertificate(text []byte) (*x509.Certificate, error) {
	if len(text) > MaxCertificateLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrCertificate, MaxCertificateLen)
	}
	der := text
	if b, _ := pem.Decode(text); b != nil {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE", ErrCertificate, b.Type)
		}
		der = b.Bytes
	} else if s := strings.Join(strings.Fields(string(text)), ""); s != "" {
		if d, err := base64.StdEncoding.DecodeString(s); err == nil {
			der = d
		}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	return c, nil
}

// Info is the summary DPS returns beside an uploaded certificate
// (X509CertificateInfo of the service API).
type Info struct {
	SubjectName      string `json:"subjectName"`
	SHA1Thumbprint   string `json:"sha1Thumbprint"`
	SHA256Thumbprint string `json:"sha256Thumbprint"`
	IssuerName       string `json:"issuerName"`
	NotBeforeUTC     string `json:"notBeforeUtc"`
	NotAfterUTC      string `json:"notAfterUtc"`
	SerialNumber     string `json:"serialNumber"`
	Version          int    `json:"version"`
}

// InfoOf summarises c.
func InfoOf(c *x509.Certificate) Info {
	return Info{
		SubjectName:      "CN=" + c.Subject.CommonName + orgSuffix(c.Subject.Organization),
		SHA1Thumbprint:   SHA1Thumbprint(c),
		SHA256Thumbprint: SHA256Thumbprint(c),
		IssuerName:       "CN=" + c.Issuer.CommonName + orgSuffix(c.Issuer.Organization),
		NotBeforeUTC:     c.NotBefore.UTC().Format(time.RFC3339),
		NotAfterUTC:      c.NotAfter.UTC().Format(time.RFC3339),
		SerialNumber:     strings.ToUpper(c.SerialNumber.Text(16)),
		Version:          c.Version,
	}
}

func orgSuffix(o []string) string {
	if len(o) == 0 {
		return ""
	}
	return ", O=" + o[0]
}

// SHA1Thumbprint is the upper-case hex SHA-1 of the DER certificate, as IoT
// Hub and DPS show thumbprints.
func SHA1Thumbprint(c *x509.Certificate) string {
	s := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// SHA256Thumbprint is the upper-case hex SHA-256 of the DER certificate.
func SHA256Thumbprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// VerifyProofOfPossession checks a verification certificate for CA
// certificate ca: its subject CN must be code, and it must be signed by the
// CA's key. The error says which check failed.
func VerifyProofOfPossession(ca, proof *x509.Certificate, code string) error {
	if code == "" {
		return errors.New("no verification code has been generated for this certificate")
	}
	if proof.Subject.CommonName != code {
		return fmt.Errorf("verification certificate subject CN is %q, want the verification code %q", proof.Subject.CommonName, code)
	}
	if err := proof.CheckSignatureFrom(ca); err != nil {
		// CheckSignatureFrom requires the parent to be a CA; fall back to
		// the raw signature check for leaf-style uploads.
		if err2 := ca.CheckSignature(proof.SignatureAlgorithm, proof.RawTBSCertificate, proof.Signature); err2 != nil {
			return fmt.Errorf("verification certificate is not signed by the certificate's private key: %v", err2)
		}
	}
	return nil
}
