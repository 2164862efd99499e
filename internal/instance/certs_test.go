package instance

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/pkitest"
)

func TestCertificateProofOfPossession(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "certs-pop", Location: "westeurope"})
	ca := pkitest.NewCA(t, "Test Root CA")

	c, created, err := m.PutCertificate(ctx, "certs-pop", "root", CertSpec{Certificate: ca.PEM})
	if err != nil || !created || c.IsVerified || c.Subject != "CN=Test Root CA" || len(c.Thumbprint) != 40 || c.Etag == "" {
		t.Fatalf("PutCertificate = %+v, %v, %v", c, created, err)
	}
	_, err = m.GenerateVerificationCode(ctx, "certs-pop", "root", "")
	wantKind(t, err, ErrInvalid) // If-Match required
	_, err = m.GenerateVerificationCode(ctx, "certs-pop", "root", `"stale"`)
	wantKind(t, err, ErrPrecondition)
	_, err = m.VerifyCertificate(ctx, "certs-pop", "root", c.Etag, ca.IssuePEM(t, "anything"))
	wantKind(t, err, ErrInvalid) // no code yet

	g, err := m.GenerateVerificationCode(ctx, "certs-pop", "root", `"`+c.Etag+`"`)
	if err != nil || len(g.VerificationCode) != 48 || g.Etag == c.Etag {
		t.Fatalf("GenerateVerificationCode = %+v, %v", g, err)
	}
	other := pkitest.NewCA(t, "Other CA")
	refused := []struct {
		name, proof, ifMatch, msg string
	}{
		{"wrong CN", ca.IssuePEM(t, "not-the-code"), g.Etag, "subject CN"},
		{"wrong key", other.IssuePEM(t, g.VerificationCode), g.Etag, "not signed"},
		{"garbage", "garbage", g.Etag, "verification certificate"},
	}
	for _, tt := range refused {
		_, err := m.VerifyCertificate(ctx, "certs-pop", "root", tt.ifMatch, tt.proof)
		wantKind(t, err, ErrInvalid)
		if !strings.Contains(Message(err), tt.msg) {
			t.Errorf("%s: message %q does not contain %q", tt.name, Message(err), tt.msg)
		}
	}
	_, err = m.VerifyCertificate(ctx, "certs-pop", "root", c.Etag, ca.IssuePEM(t, g.VerificationCode))
	wantKind(t, err, ErrPrecondition) // etag changed with the code
	v, err := m.VerifyCertificate(ctx, "certs-pop", "root", g.Etag, ca.IssuePEM(t, g.VerificationCode))
	if err != nil || !v.IsVerified || v.VerificationCode != "" {
		t.Fatalf("VerifyCertificate = %+v, %v", v, err)
	}
	got, err := m.Certificate(ctx, "certs-pop", "ROOT", "")
	if err != nil || !got.IsVerified || got.Etag != v.Etag {
		t.Errorf("Certificate = %+v, %v", got, err)
	}
}

func TestCertificateUploadAndDelete(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "certs-up", Location: "westeurope"})
	ca := pkitest.NewCA(t, "Upload CA")
	b64pem := base64.StdEncoding.EncodeToString([]byte(ca.PEM)) // what the ARM SDK sends for a .pem file
	c, _, err := m.PutCertificate(ctx, "certs-up", "ca1", CertSpec{Certificate: b64pem, IsVerified: ptr(true)})
	if err != nil || !c.IsVerified {
		t.Fatalf("upload verified: %+v %v", c, err)
	}
	b64der := base64.StdEncoding.EncodeToString(ca.Cert.Raw)
	// Replacing needs If-Match; the same content is a no-op.
	_, _, err = m.PutCertificate(ctx, "certs-up", "ca1", CertSpec{Certificate: b64der})
	wantKind(t, err, ErrInvalid)
	same, created, err := m.PutCertificate(ctx, "certs-up", "ca1", CertSpec{Certificate: b64der, IfMatch: "*"})
	if err != nil || created || same.Etag != c.Etag || !same.IsVerified {
		t.Errorf("same upload: %+v %v %v", same, created, err)
	}
	other := pkitest.NewCA(t, "Replacement CA")
	r, _, err := m.PutCertificate(ctx, "certs-up", "ca1", CertSpec{Certificate: other.PEM, IfMatch: c.Etag})
	if err != nil || r.IsVerified || r.Subject != "CN=Replacement CA" || r.Etag == c.Etag {
		t.Errorf("replace: %+v %v", r, err)
	}
	for _, bad := range []struct{ name, cert string }{{"bad/name", ca.PEM}, {"ok", "garbage"}, {"ok", ""}} {
		_, _, err := m.PutCertificate(ctx, "certs-up", bad.name, CertSpec{Certificate: bad.cert})
		wantKind(t, err, ErrInvalid)
	}
	_, err = m.Certificate(ctx, "certs-up", "ca1", `"stale"`)
	wantKind(t, err, ErrPrecondition)
	wantKind(t, m.DeleteCertificate(ctx, "certs-up", "ca1", ""), ErrInvalid)
	wantKind(t, m.DeleteCertificate(ctx, "certs-up", "ca1", c.Etag), ErrPrecondition)
	if err := m.DeleteCertificate(ctx, "certs-up", "ca1", r.Etag); err != nil {
		t.Fatal(err)
	}
	_, err = m.Certificate(ctx, "certs-up", "ca1", "")
	wantKind(t, err, ErrNotFound)
	wantKind(t, m.DeleteCertificate(ctx, "certs-up", "ca1", "*"), ErrNotFound)
}

func TestCertificateLimit(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "certs-limit", Location: "westeurope"})
	ca := pkitest.NewCA(t, "Limit CA")
	for i := range MaxCertificates {
		if _, _, err := m.PutCertificate(ctx, "certs-limit", fmt.Sprintf("c%02d", i), CertSpec{Certificate: ca.PEM}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := m.PutCertificate(ctx, "certs-limit", "one-too-many", CertSpec{Certificate: ca.PEM})
	wantKind(t, err, ErrLimit)
	list, err := m.Certificates(ctx, "certs-limit")
	if err != nil || len(list) != MaxCertificates {
		t.Errorf("Certificates = %d, %v", len(list), err)
	}
}
