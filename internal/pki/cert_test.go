package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// wrap inserts sep every n characters of s.
func wrap(s string, n int, sep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		b.WriteString(s[i:min(i+n, len(s))])
		b.WriteString(sep)
	}
	return b.String()
}

func TestParseCertificate(t *testing.T) {
	ca := newTestCA(t)
	der := ca.Cert.Raw
	b64 := base64.StdEncoding.EncodeToString(der)
	tests := []struct {
		name    string
		text    []byte
		wantErr string // "" = parses to ca.Cert
	}{
		{"pem", ca.CertPEM, ""},
		{"pem with surrounding text", append([]byte("subject=CN=x\n"), ca.CertPEM...), ""},
		{"base64 der", []byte(b64), ""},
		{"base64 with LF line breaks", []byte(wrap(b64, 64, "\n")), ""},
		{"base64 with CRLF line breaks", []byte(wrap(b64, 76, "\r\n")), ""},
		{"base64 with surrounding spaces", []byte("  " + b64 + " \n"), ""},
		{"raw der", der, ""},
		{"empty", nil, "invalid certificate"},
		{"whitespace", []byte(" \n\t"), "invalid certificate"},
		{"garbage", []byte("this is not a certificate"), "invalid certificate"},
		{"base64 of garbage", []byte(base64.StdEncoding.EncodeToString([]byte("nope"))), "invalid certificate"},
		{"truncated base64", []byte(b64[:len(b64)/2]), "invalid certificate"},
		{"private key pem", EncodePEM("PRIVATE KEY", []byte{1, 2, 3}), `"PRIVATE KEY"`},
		{"certificate request pem", EncodePEM("CERTIFICATE REQUEST", der), `"CERTIFICATE REQUEST"`},
		{"pem of garbage", EncodePEM("CERTIFICATE", []byte("junk")), "invalid certificate"},
		{"too long", bytes.Repeat([]byte("A"), MaxCertificateLen+1), "longer than"},
		{"too long pem", append(ca.CertPEM, bytes.Repeat([]byte("\n"), MaxCertificateLen)...), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCertificate(tt.text)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseCertificate: %v", err)
				}
				if !c.Equal(ca.Cert) {
					t.Errorf("parsed %q, want the CA certificate", c.Subject)
				}
				return
			}
			if !errors.Is(err, ErrCertificate) {
				t.Fatalf("err = %v, want ErrCertificate", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestInfoOf(t *testing.T) {
	ca := newTestCA(t)
	leaf := mustIssue(t, ca, "device-1").Leaf
	info := InfoOf(leaf)
	s1, s256 := sha1.Sum(leaf.Raw), sha256.Sum256(leaf.Raw)
	tests := []struct{ field, got, want string }{
		{"SubjectName", info.SubjectName, "CN=device-1, O=opendps"},
		{"IssuerName", info.IssuerName, "CN=test CA, O=opendps"},
		{"SHA1Thumbprint", info.SHA1Thumbprint, strings.ToUpper(hex.EncodeToString(s1[:]))},
		{"SHA256Thumbprint", info.SHA256Thumbprint, strings.ToUpper(hex.EncodeToString(s256[:]))},
		{"SHA1Thumbprint()", SHA1Thumbprint(leaf), info.SHA1Thumbprint},
		{"SHA256Thumbprint()", SHA256Thumbprint(leaf), info.SHA256Thumbprint},
		{"NotBeforeUTC", info.NotBeforeUTC, leaf.NotBefore.UTC().Format(time.RFC3339)},
		{"NotAfterUTC", info.NotAfterUTC, leaf.NotAfter.UTC().Format(time.RFC3339)},
		{"SerialNumber", info.SerialNumber, strings.ToUpper(leaf.SerialNumber.Text(16))},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.field, tt.got, tt.want)
		}
	}
	if got, want := len(info.SHA1Thumbprint), 40; got != want {
		t.Errorf("len(SHA1Thumbprint) = %d, want %d", got, want)
	}
	if got, want := len(info.SHA256Thumbprint), 64; got != want {
		t.Errorf("len(SHA256Thumbprint) = %d, want %d", got, want)
	}
	for _, s := range []string{info.SHA1Thumbprint, info.SHA256Thumbprint, info.SerialNumber} {
		if s != strings.ToUpper(s) {
			t.Errorf("%q is not upper case", s)
		}
	}
	if !strings.HasSuffix(info.NotAfterUTC, "Z") {
		t.Errorf("NotAfterUTC = %q, want UTC (Z)", info.NotAfterUTC)
	}
	if got, want := info.Version, 3; got != want {
		t.Errorf("Version = %d, want %d", got, want)
	}

	// Without an organization there is no ", O=" suffix.
	bare := selfSigned(t, "bare", nil)
	if got, want := InfoOf(bare).SubjectName, "CN=bare"; got != want {
		t.Errorf("SubjectName = %q, want %q", got, want)
	}
}

// selfSigned returns a self-signed non-CA certificate; key is generated
// when nil.
func selfSigned(t *testing.T, cn string, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	if key == nil {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// proofCert returns a certificate with subject CN cn, issued by parent and
// signed by signer (which need not be parent's key).
func proofCert(t *testing.T, cn string, parent *x509.Certificate, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	issuer := *parent
	issuer.PublicKey = signer.Public() // lets CreateCertificate sign with a foreign key
	der, err := x509.CreateCertificate(rand.Reader, tmpl, &issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyProofOfPossession(t *testing.T) {
	ca := newTestCA(t)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafCA := selfSigned(t, "leaf-style upload", leafKey) // not a CA: exercises the raw signature check
	const code = "8F2C1E6A0B3D4C5E"
	tests := []struct {
		name    string
		ca      *x509.Certificate
		proof   *x509.Certificate
		code    string
		wantErr string
	}{
		{"good", ca.Cert, proofCert(t, code, ca.Cert, ca.Key), code, ""},
		{"good leaf-style CA", leafCA, proofCert(t, code, leafCA, leafKey), code, ""},
		{"cn mismatch", ca.Cert, proofCert(t, "something else", ca.Cert, ca.Key), code, "subject CN"},
		{"cn differs in case", ca.Cert, proofCert(t, strings.ToLower(code), ca.Cert, ca.Key), code, "subject CN"},
		{"signed by another key", ca.Cert, proofCert(t, code, ca.Cert, otherKey), code, "not signed"},
		{"leaf-style signed by another key", leafCA, proofCert(t, code, leafCA, otherKey), code, "not signed"},
		{"self-signed proof", ca.Cert, selfSigned(t, code, nil), code, "not signed"},
		{"no code", ca.Cert, proofCert(t, code, ca.Cert, ca.Key), "", "no verification code"},
		{"no code and empty CN", ca.Cert, proofCert(t, "", ca.Cert, ca.Key), "", "no verification code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyProofOfPossession(tt.ca, tt.proof, tt.code)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifyProofOfPossession: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParseCertificate(f *testing.F) {
	ca, err := NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(ca.Cert.Raw)
	f.Add(ca.CertPEM)
	f.Add(ca.Cert.Raw)
	f.Add([]byte(b64))
	f.Add([]byte(wrap(b64, 64, "\r\n")))
	f.Add(EncodePEM("PRIVATE KEY", []byte{0}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Add([]byte("MIIB"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c, err := ParseCertificate(text)
		if err != nil {
			if !errors.Is(err, ErrCertificate) {
				t.Fatalf("err = %v, want ErrCertificate", err)
			}
			if c != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if c == nil {
			t.Fatal("ParseCertificate = nil, nil")
		}
		if len(text) > MaxCertificateLen {
			t.Fatalf("accepted %d bytes, over the limit", len(text))
		}
		// Whatever form was accepted, the PEM and base64 forms of the
		// result parse back to the same certificate.
		for _, form := range [][]byte{EncodePEM("CERTIFICATE", c.Raw), []byte(base64.StdEncoding.EncodeToString(c.Raw))} {
			again, err := ParseCertificate(form)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			if !bytes.Equal(again.Raw, c.Raw) {
				t.Fatal("re-parse gave a different certificate")
			}
		}
		_ = InfoOf(c)
	})
}
