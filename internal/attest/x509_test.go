package attest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

var (
	x509Now    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	validFrom  = x509Now.Add(-24 * time.Hour)
	validUntil = x509Now.Add(365 * 24 * time.Hour)
)

// kit is a certificate and its key.
type kit struct {
	cert *x509.Certificate
	key  crypto.Signer
}

type certOpts struct {
	cn        string
	ca        bool
	notBefore time.Time
	notAfter  time.Time
	key       crypto.Signer // nil: a new key
}

// issue creates a certificate signed by parent (self-signed when nil).
func issue(t *testing.T, o certOpts, parent *kit) *kit {
	t.Helper()
	if o.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o.key = k
	}
	if o.notBefore.IsZero() {
		o.notBefore, o.notAfter = validFrom, validUntil
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: o.cn, Organization: []string{"opendps test"}},
		NotBefore: o.notBefore, NotAfter: o.notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, IsCA: o.ca,
	}
	if o.ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signerCert, signerKey := tmpl, o.key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, o.key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &kit{cert: c, key: o.key}
}

func pemOf(c *x509.Certificate) string { return string(pki.EncodePEM("CERTIFICATE", c.Raw)) }

func withCert(c *x509.Certificate) *model.X509CertificateWithInfo {
	return &model.X509CertificateWithInfo{Certificate: pemOf(c)}
}

func signingGroup(id string, primary, secondary *x509.Certificate) *model.EnrollmentGroup {
	p := &model.X509Certificates{Primary: withCert(primary)}
	if secondary != nil {
		p.Secondary = withCert(secondary)
	}
	return &model.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{SigningCertificates: p}},
	}}
}

func caGroup(id, primary, secondary string) *model.EnrollmentGroup {
	return &model.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{
			CAReferences: &model.X509CAReferences{Primary: primary, Secondary: secondary},
		}},
	}}
}

func x509Individual(id string, primary, secondary *model.X509CertificateWithInfo) *model.IndividualEnrollment {
	return &model.IndividualEnrollment{RegistrationID: id, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{
			ClientCertificates: &model.X509Certificates{Primary: primary, Secondary: secondary},
		}},
	}}
}

// pki is the certificate hierarchy of the tests.
type testPKI struct {
	root, inter, leaf       *kit
	root2                   *kit // an unrelated root
	expiredLeaf, futureLeaf *kit
	expiredInter, expLeaf2  *kit // leaf under an expired intermediate
	notCA, underNotCA       *kit // leaf issued by a non-CA certificate
	impostor, underImpostor *kit // same subject as inter, other key
	selfLeaf, otherLeaf     *kit
}

func newTestPKI(t *testing.T) *testPKI {
	p := &testPKI{}
	p.root = issue(t, certOpts{cn: "Test Root", ca: true}, nil)
	p.root2 = issue(t, certOpts{cn: "Other Root", ca: true}, nil)
	p.inter = issue(t, certOpts{cn: "Test Intermediate", ca: true}, p.root)
	p.leaf = issue(t, certOpts{cn: "dev1"}, p.inter)
	p.otherLeaf = issue(t, certOpts{cn: "dev1"}, p.inter)
	p.expiredLeaf = issue(t, certOpts{cn: "dev1", notBefore: x509Now.Add(-48 * time.Hour), notAfter: x509Now.Add(-time.Hour)}, p.inter)
	p.futureLeaf = issue(t, certOpts{cn: "dev1", notBefore: x509Now.Add(time.Hour), notAfter: validUntil}, p.inter)
	p.expiredInter = issue(t, certOpts{cn: "Expired Intermediate", ca: true, notBefore: x509Now.Add(-48 * time.Hour), notAfter: x509Now.Add(-time.Hour)}, p.root)
	p.expLeaf2 = issue(t, certOpts{cn: "dev1"}, p.expiredInter)
	p.notCA = issue(t, certOpts{cn: "Not A CA"}, p.root)
	p.underNotCA = issue(t, certOpts{cn: "dev1"}, p.notCA)
	p.impostor = issue(t, certOpts{cn: "Test Intermediate", ca: true}, p.root2)
	p.underImpostor = issue(t, certOpts{cn: "dev1"}, p.impostor)
	p.selfLeaf = issue(t, certOpts{cn: "dev1"}, nil)
	return p
}

func TestX509(t *testing.T) {
	p := newTestPKI(t)
	cas := map[string]MemCA{"root-verified": {Cert: p.root.cert, Verified: true}, "root-unverified": {Cert: p.root.cert}}
	chain := func(ks ...*kit) []*x509.Certificate {
		out := make([]*x509.Certificate, len(ks))
		for i, k := range ks {
			out[i] = k.cert
		}
		return out
	}
	gRoot := signingGroup("g-root", p.root.cert, nil)
	gInter := signingGroup("g-inter", p.inter.cert, nil)
	tests := []struct {
		name      string
		src       MemEnrollments
		chain     []*x509.Certificate
		regID     string // default dev1
		wantGroup string
		wantInd   bool
		wantSlot  Slot
		wantDis   bool
		wantCA    string
		wantLen   int // verified chain length, groups only
		wantErr   error
		wantMsg   string // substring
	}{
		{name: "root group, device sends intermediate", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), wantGroup: "g-root", wantSlot: Primary, wantLen: 3},
		{name: "most specific group wins", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot, gInter}}, chain: chain(p.leaf, p.inter, p.root), wantGroup: "g-inter", wantSlot: Primary, wantLen: 2},
		{name: "intermediate group, leaf only", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gInter}}, chain: chain(p.leaf), wantGroup: "g-inter", wantSlot: Primary, wantLen: 2},
		{name: "secondary signing certificate", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{signingGroup("g", p.root2.cert, p.inter.cert)}}, chain: chain(p.leaf), wantGroup: "g", wantSlot: Secondary, wantLen: 2},
		{name: "verified CA reference", src: MemEnrollments{CAs: cas, GroupList: []*model.EnrollmentGroup{caGroup("g-ca", "root-verified", "")}}, chain: chain(p.leaf, p.inter), wantGroup: "g-ca", wantSlot: Primary, wantCA: "root-verified", wantLen: 3},
		{name: "unverified CA reference", src: MemEnrollments{CAs: cas, GroupList: []*model.EnrollmentGroup{caGroup("g-ca", "missing", "root-unverified")}}, chain: chain(p.leaf, p.inter), wantErr: ErrUnverifiedCA,
			wantMsg: `intermediate certificate "CN=Test Intermediate,O=opendps test" is issued by CA certificate "root-unverified" ("CN=Test Root,O=opendps test", secondary CA reference of enrollment group "g-ca"), which is not verified: complete its proof of possession`},
		{name: "unknown issuer: intermediate not sent", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf), wantErr: ErrChain,
			wantMsg: `unknown issuer: device certificate "CN=dev1,O=opendps test" was issued by "CN=Test Intermediate,O=opendps test", which is neither`},
		{name: "unrelated root", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{signingGroup("g2", p.root2.cert, nil)}}, chain: chain(p.leaf, p.inter, p.root), wantErr: ErrChain,
			wantMsg: `the chain ends at self-signed intermediate certificate "CN=Test Root,O=opendps test", which is neither`},
		{name: "expired leaf", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.expiredLeaf, p.inter), wantErr: ErrExpired,
			wantMsg: `device certificate "CN=dev1,O=opendps test" expired at 2026-03-01T11:00:00Z`},
		{name: "leaf not yet valid", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.futureLeaf, p.inter), wantErr: ErrExpired,
			wantMsg: `device certificate "CN=dev1,O=opendps test" is not valid before 2026-03-01T13:00:00Z`},
		{name: "expired intermediate", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.expLeaf2, p.expiredInter), wantErr: ErrExpired,
			wantMsg: `intermediate certificate "CN=Expired Intermediate,O=opendps test" expired at 2026-03-01T11:00:00Z`},
		{name: "issuer is not a CA", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.underNotCA, p.notCA), wantErr: ErrChain,
			wantMsg: `intermediate certificate "CN=Not A CA,O=opendps test" issues certificates but is not a CA certificate`},
		{name: "invalid signature (impostor intermediate)", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gInter}}, chain: chain(p.underImpostor), wantErr: ErrChain,
			wantMsg: `the signature of device certificate "CN=dev1,O=opendps test" does not verify with the key of the primary signing certificate "CN=Test Intermediate,O=opendps test" of enrollment group "g-inter"`},
		{name: "invalid signature (device sent wrong intermediate)", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.underImpostor, p.inter), wantErr: ErrChain,
			wantMsg: `the signature of device certificate "CN=dev1,O=opendps test" does not verify with the key of intermediate certificate "CN=Test Intermediate,O=opendps test"`},
		{name: "CN mismatch", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), regID: "dev2", wantErr: ErrSubject,
			wantMsg: `certificate subject CN "dev1" does not match registration id "dev2"`},
		{name: "CN case-insensitive", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), regID: "DEV1", wantGroup: "g-root", wantSlot: Primary, wantLen: 3},
		{name: "no certificate", src: MemEnrollments{}, chain: nil, wantErr: ErrMalformed, wantMsg: "no client certificate was presented"},
		{name: "no enrollment at all", src: MemEnrollments{}, chain: chain(p.leaf, p.inter), wantErr: ErrNoEnrollment},
		{name: "self-signed leaf, no individual", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.selfLeaf), wantErr: ErrChain, wantMsg: `the chain ends at self-signed device certificate`},
		{name: "leaf is the group certificate", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{signingGroup("g-self", p.selfLeaf.cert, nil)}}, chain: chain(p.selfLeaf), wantErr: ErrChain,
			wantMsg: `device certificate "CN=dev1,O=opendps test" is itself the primary signing certificate "CN=dev1,O=opendps test" of enrollment group "g-self"; a device certificate must be issued by it`},
		{name: "disabled group", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{disabled(signingGroup("g", p.root.cert, nil))}}, chain: chain(p.leaf, p.inter), wantGroup: "g", wantSlot: Primary, wantDis: true, wantLen: 3},
		{name: "individual primary", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Individual("dev1", withCert(p.leaf.cert), nil)}}, chain: chain(p.leaf), wantInd: true, wantSlot: Primary},
		{name: "individual secondary", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Individual("DEV1", withCert(p.otherLeaf.cert), withCert(p.selfLeaf.cert))}}, chain: chain(p.selfLeaf), wantInd: true, wantSlot: Secondary},
		{name: "individual by thumbprint", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Individual("dev1", &model.X509CertificateWithInfo{Info: &model.X509CertificateInfo{SHA256Thumbprint: strings.ToLower(pki.SHA256Thumbprint(p.leaf.cert))}}, nil)}}, chain: chain(p.leaf), wantInd: true, wantSlot: Primary},
		{name: "individual decides over group", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Individual("dev1", withCert(p.otherLeaf.cert), nil)}, GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), wantErr: ErrCertificate,
			wantMsg: `device certificate "CN=dev1,O=opendps test" (SHA-1 thumbprint ` + pki.SHA1Thumbprint(p.leaf.cert) + `) is neither the primary nor the secondary certificate of the individual enrollment of registration id "dev1"`},
		{name: "individual is symmetric key", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{symIndividual("dev1", vecDevice, "")}, GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), wantErr: ErrAttestationType,
			wantMsg: `the individual enrollment of registration id "dev1" uses symmetric key attestation, not X.509`},
		{name: "individual expired leaf", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Individual("dev1", withCert(p.expiredLeaf.cert), nil)}}, chain: chain(p.expiredLeaf), wantErr: ErrExpired},
		{name: "disabled individual", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{disabled(x509Individual("dev1", withCert(p.leaf.cert), nil))}}, chain: chain(p.leaf), wantInd: true, wantSlot: Primary, wantDis: true},
		{name: "disabled individual blocks group device", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{disabled(x509Individual("dev1", withCert(p.otherLeaf.cert), nil))}, GroupList: []*model.EnrollmentGroup{gRoot}}, chain: chain(p.leaf, p.inter), wantInd: true, wantGroup: "g-root", wantSlot: Primary, wantDis: true, wantLen: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := X509Request{Enrollments: &tt.src, RegistrationID: "dev1", Chain: tt.chain, Now: x509Now}
			if tt.regID != "" {
				req.RegistrationID = tt.regID
			}
			m, err := (&Attestor{}).X509(context.Background(), req)
			checkResult(t, m, err, tt.wantErr, "", CodeCertificateUnauthorized)
			if err != nil {
				if !strings.Contains(err.(*Error).Message, tt.wantMsg) {
					t.Errorf("message = %q\nwant it to contain %q", err.(*Error).Message, tt.wantMsg)
				}
				return
			}
			if got := m.EnrollmentGroupID(); got != tt.wantGroup {
				t.Errorf("group = %q, want %q", got, tt.wantGroup)
			}
			if got := m.Individual != nil; got != tt.wantInd {
				t.Errorf("individual set = %v, want %v", got, tt.wantInd)
			}
			if m.KeyUsed != tt.wantSlot || m.Disabled != tt.wantDis || m.CAName != tt.wantCA || len(m.Chain) != tt.wantLen {
				t.Errorf("match = {slot %v, disabled %v, ca %q, chain %d}, want {%v, %v, %q, %d}", m.KeyUsed, m.Disabled, m.CAName, len(m.Chain), tt.wantSlot, tt.wantDis, tt.wantCA, tt.wantLen)
			}
			if m.AttestationType != model.AttestationX509 || m.Certificate != tt.chain[0] {
				t.Errorf("type %q, certificate %v", m.AttestationType, m.Certificate)
			}
		})
	}
}
