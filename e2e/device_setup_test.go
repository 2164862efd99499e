package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/allocate"
	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// deviceSuite is what test/node/device.test.js reads from DEVICE_E2E: where
// the device API is, and the enrollments and credentials of each case.
type deviceSuite struct {
	Suite    string   `json:"suite"`    // "main" or "throttle"
	Host     string   `json:"host"`     // device endpoint host:port (HTTPS, MQTT over WebSocket)
	MQTTHost string   `json:"mqttHost"` // MQTT over TLS host:port
	IDScope  string   `json:"idScope"`
	Hubs     []string `json:"hubs"` // linked hub names, hub1 first
	Harness  string   `json:"harness"`

	Individual         symCred            `json:"individual"`
	Group              groupCred          `json:"group"`
	X509Individual     x509Cred           `json:"x509Individual"`
	X509Signed         x509Cred           `json:"x509Signed"`
	X509CARef          x509Cred           `json:"x509CARef"`
	X509Untrusted      x509Cred           `json:"x509Untrusted"`
	DeviceIDEnrollment symCred            `json:"deviceIdEnrollment"`
	Disabled           symCred            `json:"disabled"`
	DisabledGroup      groupCred          `json:"disabledGroup"`
	WrongKey           symCred            `json:"wrongKey"`
	Reprovision        map[string]symCred `json:"reprovision"`
	CustomOK           symCred            `json:"customOk"`
	CustomFail         symCred            `json:"customFail"`
	CustomSlow         groupCred          `json:"customSlow"`
	FastPath           []symCred          `json:"fastPath"`
	DeadHub            groupCred          `json:"deadHub"`
	Throttle           symCred            `json:"throttle"`

	// Raw is registered by the Go side only (raw HTTPS requests).
	Raw symCred `json:"-"`
}

// symCred is a device of an individual symmetric-key enrollment.
type symCred struct {
	RegID        string `json:"regId"`
	DeviceID     string `json:"deviceId,omitempty"`
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// groupCred is a symmetric-key enrollment group and its devices'
// registration ids (devices derive their keys).
type groupCred struct {
	ID           string   `json:"id"`
	PrimaryKey   string   `json:"primaryKey"`
	SecondaryKey string   `json:"secondaryKey"`
	Devices      []string `json:"devices"`
}

// x509Cred is an X.509 device: its chain (leaf first) and key as PEM.
type x509Cred struct {
	RegID        string `json:"regId"`
	Group        string `json:"group,omitempty"`
	Cert         string `json:"cert"`
	Key          string `json:"key"`
	SHA1         string `json:"sha1"`
	SHA256       string `json:"sha256"`
	AnchorSHA256 string `json:"anchorSha256,omitempty"`
}

// webhookAPIVersion is the customAllocationDefinition.apiVersion used.
const webhookAPIVersion = "2021-10-01"

// prepareDevices creates every enrollment, group and certificate of the
// main suite of one transport through the service and control APIs. Every
// registration id, group id and CA name ends with the transport's suffix,
// so that the suites of the transports share one deployment without
// seeing each other's registrations.
func (e *deployment) prepareDevices(ctx context.Context, webhookURL string, tr transport) *deviceSuite {
	e.t.Helper()
	n := func(id string) string { return id + tr.suffix }
	hub1 := e.conn.Hubs[0].HostName
	custom := func(en *model.EnrollmentCommon) {
		en.AllocationPolicy = model.AllocationCustom
		en.CustomAllocationDefinition = &model.CustomAllocationDefinition{WebhookURL: webhookURL, APIVersion: webhookAPIVersion}
		en.InitialTwin = &model.InitialTwin{Tags: json.RawMessage(`{"fleet":"enrollment"}`)}
	}
	s := e.suite("main")
	s.Individual = e.symEnrollment(ctx, n("sym-individual-01"), nil)
	s.Group = e.symGroup(ctx, n("sym-group"), nil, n("sym-group-dev-01"), n("sym-group-dev-02"), n("sym-group-dev-03"))
	e.prepareX509(ctx, s, tr)
	s.DeviceIDEnrollment = e.symEnrollment(ctx, n("devid-reg-01"), func(en *dpsclient.IndividualEnrollment) {
		en.DeviceID = n("hub-device-name-01")
	})
	s.Disabled = e.symEnrollment(ctx, n("disabled-01"), func(en *dpsclient.IndividualEnrollment) {
		en.ProvisioningStatus = model.StatusDisabled
	})
	s.DisabledGroup = e.symGroup(ctx, n("disabled-group"), func(g *model.EnrollmentCommon) {
		g.ProvisioningStatus = model.StatusDisabled
	}, n("disabled-group-dev-01"))
	s.WrongKey = e.symEnrollment(ctx, n("wrong-key-01"), nil)
	s.WrongKey.PrimaryKey = enrollment.GenerateKey()
	s.Reprovision = e.prepareReprovisioning(ctx, hub1, tr)
	s.CustomOK = e.symEnrollment(ctx, n("custom-ok-01"), func(en *dpsclient.IndividualEnrollment) { custom(&en.EnrollmentCommon) })
	s.CustomFail = e.symEnrollment(ctx, n("custom-fail-01"), func(en *dpsclient.IndividualEnrollment) { custom(&en.EnrollmentCommon) })
	s.CustomSlow = e.symGroup(ctx, n("custom-slow-group"), custom, n("custom-slow-dev-01"))
	for i := range 3 {
		s.FastPath = append(s.FastPath, e.symEnrollment(ctx, n(fmt.Sprintf("fast-path-%02d", i)), nil))
	}
	if tr.deadHub {
		s.DeadHub = e.symGroup(ctx, n("dead-hub-group"), nil, deadHubDevices(e.t, e.linkedHubs(ctx), hub1, tr.suffix)...)
	}
	s.Raw = e.symEnrollment(ctx, n("raw-01"), nil)
	return s
}

// suite returns the connection part of a suite.
func (e *deployment) suite(name string) *deviceSuite {
	return &deviceSuite{Suite: name, Host: e.conn.DeviceEndpoint, MQTTHost: e.conn.MQTTEndpoint, IDScope: e.conn.IDScope,
		Hubs: []string{e.conn.Hubs[0].HostName, e.conn.Hubs[1].HostName}}
}

// prepareReprovisioning enrolls one device per reprovision policy, each on
// hub1 with an initial twin; "delete" has no policy (the default).
func (e *deployment) prepareReprovisioning(ctx context.Context, hub1 string, tr transport) map[string]symCred {
	policies := map[string]*model.ReprovisionPolicy{
		"migrate":    {UpdateHubAssignment: true, MigrateDeviceData: true},
		"reset":      {UpdateHubAssignment: true, MigrateDeviceData: false},
		"never":      {UpdateHubAssignment: false, MigrateDeviceData: true},
		"neverReset": {UpdateHubAssignment: false, MigrateDeviceData: false},
		"delete":     nil,
	}
	out := map[string]symCred{}
	for name, p := range policies {
		out[name] = e.symEnrollment(ctx, "reprov-"+name+tr.suffix, func(en *dpsclient.IndividualEnrollment) {
			en.ReprovisionPolicy = p
			en.IoTHubs = []string{hub1}
			en.InitialTwin = &model.InitialTwin{Tags: json.RawMessage(`{"fleet":"e2e"}`),
				Properties: &model.InitialTwinProperties{Desired: json.RawMessage(`{"mode":"initial"}`)}}
		})
	}
	return out
}

// deadHubDevices returns registration ids that hashed allocation over the
// linked hubs puts on hub1 (three) and elsewhere (one), so that stopping
// hub1 matters.
func deadHubDevices(t *testing.T, linked []model.LinkedHub, hub1, suffix string) []string {
	t.Helper()
	var on1, other []string
	for i := 0; len(on1) < 3 || len(other) < 1; i++ {
		id := fmt.Sprintf("dead-hub-dev-%02d", i) + suffix
		h, ok := allocate.Hashed(id, linked)
		switch {
		case !ok || i > 1000:
			t.Fatalf("cannot find devices hashed to %s among %+v", hub1, linked)
		case h.Name == hub1 && len(on1) < 3:
			on1 = append(on1, id)
		case h.Name != hub1 && len(other) < 1:
			other = append(other, id)
		}
	}
	return append(on1, other...)
}

// linkedHubs reads the instance's linked hubs (names, weights) through
// the control API.
func (e *deployment) linkedHubs(ctx context.Context) []model.LinkedHub {
	e.t.Helper()
	hubs, err := e.ctl.ListHubs(ctx, devenv.DefaultInstance)
	if err != nil || len(hubs) != 2 {
		e.t.Fatalf("linked hubs: %d %v, want 2", len(hubs), err)
	}
	out := make([]model.LinkedHub, len(hubs))
	for i, h := range hubs {
		out[i] = model.LinkedHub{Name: h.Name, AllocationWeight: h.AllocationWeight, ApplyAllocationPolicy: true}
	}
	return out
}

// symEnrollment creates an individual symmetric-key enrollment with keys
// generated by the service, after mutate, and returns its credentials.
func (e *deployment) symEnrollment(ctx context.Context, regID string, mutate func(*dpsclient.IndividualEnrollment)) symCred {
	e.t.Helper()
	en := &dpsclient.IndividualEnrollment{RegistrationID: regID}
	en.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	if mutate != nil {
		mutate(en)
	}
	got, err := e.svc.CreateOrUpdateEnrollment(ctx, en)
	if err != nil {
		e.t.Fatalf("create enrollment %s: %v", regID, err)
	}
	k := got.Attestation.SymmetricKey
	return symCred{RegID: regID, DeviceID: got.DeviceID, PrimaryKey: k.PrimaryKey, SecondaryKey: k.SecondaryKey}
}

// symGroup creates a symmetric-key enrollment group with generated keys.
func (e *deployment) symGroup(ctx context.Context, id string, mutate func(*model.EnrollmentCommon), devices ...string) groupCred {
	e.t.Helper()
	g := &dpsclient.EnrollmentGroup{EnrollmentGroupID: id}
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	if mutate != nil {
		mutate(&g.EnrollmentCommon)
	}
	got, err := e.svc.CreateOrUpdateGroup(ctx, g)
	if err != nil {
		e.t.Fatalf("create group %s: %v", id, err)
	}
	k := got.Attestation.SymmetricKey
	return groupCred{ID: id, PrimaryKey: k.PrimaryKey, SecondaryKey: k.SecondaryKey, Devices: devices}
}

// prepareX509 enrolls an individual X.509 device, a group anchored on an
// inline signing certificate, and a group anchored on a CA certificate
// verified by proof of possession; group devices hold leaf + intermediate.
func (e *deployment) prepareX509(ctx context.Context, s *deviceSuite, tr transport) {
	t := e.t
	t.Helper()
	n := func(id string) string { return id + tr.suffix }
	self := newCA(t, "x509 individual issuer")
	s.X509Individual = deviceCert(t, self, n("x509-individual-01"))
	ind := &dpsclient.IndividualEnrollment{RegistrationID: s.X509Individual.RegID}
	ind.Attestation = &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{
		ClientCertificates: &model.X509Certificates{Primary: &model.X509CertificateWithInfo{Certificate: firstPEM(s.X509Individual.Cert)}}}}
	if _, err := e.svc.CreateOrUpdateEnrollment(ctx, ind); err != nil {
		t.Fatal(err)
	}

	signer := newCA(t, "x509 signing root")
	s.X509Signed = deviceCert(t, intermediate(t, signer, "x509 signing intermediate"), n("x509-signed-dev-01"))
	s.X509Signed.Group, s.X509Signed.AnchorSHA256 = n("x509-signing-group"), pki.SHA256Thumbprint(signer.Cert)
	e.x509Group(ctx, s.X509Signed.Group, &model.X509Attestation{SigningCertificates: &model.X509Certificates{
		Primary: &model.X509CertificateWithInfo{Certificate: string(signer.CertPEM)}}})

	root := newCA(t, "x509 verified root")
	e.verifyCA(ctx, n("device-e2e-root"), root)
	s.X509CARef = deviceCert(t, intermediate(t, root, "x509 verified intermediate"), n("x509-caref-dev-01"))
	s.X509CARef.Group, s.X509CARef.AnchorSHA256 = n("x509-caref-group"), pki.SHA256Thumbprint(root.Cert)
	e.x509Group(ctx, s.X509CARef.Group, &model.X509Attestation{CAReferences: &model.X509CAReferences{Primary: n("device-e2e-root")}})

	s.X509Untrusted = deviceCert(t, intermediate(t, newCA(t, "unknown root"), "unknown intermediate"), n("x509-untrusted-01"))
}

func (e *deployment) x509Group(ctx context.Context, id string, x *model.X509Attestation) {
	e.t.Helper()
	g := &dpsclient.EnrollmentGroup{EnrollmentGroupID: id}
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationX509, X509: x}
	if _, err := e.svc.CreateOrUpdateGroup(ctx, g); err != nil {
		e.t.Fatalf("create group %s: %v", id, err)
	}
}

func newCA(t *testing.T, cn string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// intermediate returns a CA certificate signed by parent.
func intermediate(t *testing.T, parent *pki.CA, cn string) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, CertPEM: pki.EncodePEM("CERTIFICATE", der), Key: key}
}

// deviceCert issues a device certificate with CN regID from issuer. The
// PEM chain is the leaf, then issuer unless issuer is self-signed (a root
// is never sent: the verifier must anchor on what it knows).
func deviceCert(t *testing.T, issuer *pki.CA, regID string) x509Cred {
	t.Helper()
	c, err := issuer.Issue([]string{regID}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	chain := pki.EncodePEM("CERTIFICATE", c.Leaf.Raw)
	if issuer.Cert.Subject.String() != issuer.Cert.Issuer.String() {
		chain = append(chain, issuer.CertPEM...)
	}
	return x509Cred{RegID: regID, Cert: string(chain), Key: string(keyPEM(t, c)),
		SHA1: pki.SHA1Thumbprint(c.Leaf), SHA256: pki.SHA256Thumbprint(c.Leaf)}
}

func keyPEM(t *testing.T, c tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodePEM("PRIVATE KEY", der)
}

// firstPEM returns the first PEM block of a chain.
func firstPEM(chain string) string {
	c, err := pki.ParseCertificate([]byte(chain))
	if err != nil {
		return chain
	}
	return string(pki.EncodePEM("CERTIFICATE", c.Raw))
}
