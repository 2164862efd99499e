// Package e2e holds end-to-end tests that start a whole deployment
// (devenv: real nodes with embedded etcd and TLS, the hub simulator) and
// drive it the way users do: with the official Azure IoT Node.js SDKs and
// with opendps's own Go clients.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/pkg/dpsclient"
)

type deployment struct {
	t    *testing.T
	dir  string
	d    *devenv.Deployment
	conn *dpsclient.Connection
	hc   *http.Client
	ctl  *dpsclient.Control
	svc  *dpsclient.Service
}

// startDeployment starts a dev deployment of one node in dir, logging
// errors only. Tests of zones (zones_test.go) start three.
func startDeployment(t *testing.T, dir string) *deployment {
	t.Helper()
	return startDeploymentWith(t, devenv.Options{DataDir: dir, LogLevel: "error", Zones: 1})
}

// TestCoreServiceAPIWithNodeSDK starts a dev deployment and drives its
// service API with the official azure-iot-provisioning-service package
// (test/node/service.test.js) and its simulated hubs with azure-iothub.
func TestCoreServiceAPIWithNodeSDK(t *testing.T) {
	nodetest.Dir(t)
	ctx := context.Background()
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()

	read, err := e.ctl.SetPolicy(ctx, devenv.DefaultInstance, "enrollmentread", "EnrollmentRead", true)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("e2e root")
	if err != nil {
		t.Fatal(err)
	}
	e.verifyCA(ctx, "verified-ca", ca)
	if _, err := e.ctl.PutCertificate(ctx, devenv.DefaultInstance, "unverified-ca", string(ca.CertPEM), false, ""); err != nil {
		t.Fatal(err)
	}
	hub1 := e.conn.Hubs[0].HostName
	const regGroup, regCount = "node-reg-group", 5
	for i := range regCount {
		e.putRegistration(fmt.Sprintf("node-reg-%d", i), regGroup, hub1)
	}
	e.putRegistration("node-reg-single", "", hub1)
	device, err := ca.Issue([]string{"node-x509-01"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := pki.NewCA("node-signer")
	host := e.conn.ServiceEndpoint
	cs := func(policy, key string) string {
		return fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", host, policy, key)
	}
	owner, _ := sas.ParseConnectionString(e.conn.ServiceConnectionString)
	nodetest.Run(t, "service.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS":         e.conn.CACertificate,
		"DPS_CONNECTION_STRING":       e.conn.ServiceConnectionString,
		"DPS_READ_CONNECTION_STRING":  cs(read.KeyName, read.PrimaryKey),
		"DPS_WRONG_CONNECTION_STRING": cs(owner.SharedAccessKeyName, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc="),
		"HUB1":                        hub1,
		"X509_CERT_PEM":               string(pki.EncodePEM("CERTIFICATE", device.Leaf.Raw)),
		"X509_CERT_SHA256":            pki.SHA256Thumbprint(device.Leaf),
		"SIGNING_CERT_PEM":            string(signer.CertPEM),
		"CA_VERIFIED":                 "verified-ca",
		"CA_UNVERIFIED":               "unverified-ca",
		"REG_ID":                      "node-reg-single",
		"REG_GROUP":                   regGroup,
		"REG_GROUP_COUNT":             fmt.Sprint(regCount),
	})
	nodetest.Run(t, "hubsim.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS":   e.conn.CACertificate,
		"HUB_CONNECTION_STRING": e.conn.Hubs[1].ConnectionString,
	})
}

// verifyCA uploads ca as name and proves possession of its key.
func (e *deployment) verifyCA(ctx context.Context, name string, ca *pki.CA) {
	e.t.Helper()
	c, err := e.ctl.PutCertificate(ctx, devenv.DefaultInstance, name, string(ca.CertPEM), false, "")
	if err != nil {
		e.t.Fatal(err)
	}
	c, err = e.ctl.GenerateVerificationCode(ctx, devenv.DefaultInstance, name, c.Etag)
	if err != nil {
		e.t.Fatal(err)
	}
	proof := issueWithCN(e.t, ca, c.Properties.VerificationCode)
	c, err = e.ctl.VerifyCertificate(ctx, devenv.DefaultInstance, name, c.Etag, string(proof))
	if err != nil {
		e.t.Fatal(err)
	}
	if !c.Properties.IsVerified {
		e.t.Fatalf("certificate %s not verified after proof of possession", name)
	}
}

func issueWithCN(t *testing.T, ca *pki.CA, cn string) []byte {
	t.Helper()
	c, err := ca.Issue([]string{cn}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.Subject.CommonName != cn {
		t.Fatalf("CN = %q", c.Leaf.Subject.CommonName)
	}
	return pki.EncodePEM("CERTIFICATE", c.Leaf.Raw)
}

func (e *deployment) putRegistration(id, group, hub string) {
	e.t.Helper()
	_, err := e.d.Nodes[0].Enrollments().PutRegistration(context.Background(), devenv.DefaultInstance, &model.Registration{
		DeviceRegistrationState: model.DeviceRegistrationState{RegistrationID: id, Status: "assigned",
			AssignedHub: hub, DeviceID: id, Substatus: "initialAssignment"},
		EnrollmentGroupID: group})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestCoreRestartKeepsEverything writes through every API, restarts the
// deployment on the same data directory, and finds everything again.
func TestCoreRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := startDeployment(t, dir)
	scope, svcCS := e.conn.IDScope, e.conn.ServiceConnectionString

	if _, err := e.ctl.CreateInstance(ctx, "residency", dpsclient.InstanceSpec{Location: "brazilsouth", EnableDataResidency: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.SetPolicy(ctx, devenv.DefaultInstance, "reader", "EnrollmentRead, RegistrationStatusRead", true); err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.NewCA("restart root")
	e.verifyCA(ctx, "root", ca)
	enr := &dpsclient.IndividualEnrollment{RegistrationID: "persist-1"}
	enr.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	created, err := e.svc.CreateOrUpdateEnrollment(ctx, enr)
	if err != nil {
		t.Fatal(err)
	}
	grp := &dpsclient.EnrollmentGroup{EnrollmentGroupID: "persist-group"}
	grp.Attestation = &model.AttestationMechanism{Type: model.AttestationX509,
		X509: &model.X509Attestation{CAReferences: &model.X509CAReferences{Primary: "root"}}}
	if _, err := e.svc.CreateOrUpdateGroup(ctx, grp); err != nil {
		t.Fatal(err)
	}
	e.putRegistration("persist-1", "", e.conn.Hubs[0].HostName)
	e.d.Close()

	e = startDeployment(t, dir)
	defer e.d.Close()
	if e.conn.IDScope != scope || e.conn.ServiceConnectionString != svcCS {
		t.Errorf("connection changed across restart: scope %s -> %s", scope, e.conn.IDScope)
	}
	got, err := e.svc.GetEnrollment(ctx, "persist-1")
	if err != nil || got.Etag != created.Etag || got.Attestation.SymmetricKey.PrimaryKey != created.Attestation.SymmetricKey.PrimaryKey {
		t.Errorf("enrollment after restart = %+v, %v", got, err)
	}
	if _, err := e.svc.GetGroup(ctx, "persist-group"); err != nil {
		t.Errorf("group after restart: %v", err)
	}
	if r, err := e.svc.GetRegistration(ctx, "persist-1"); err != nil || r.Status != "assigned" {
		t.Errorf("registration after restart: %+v %v", r, err)
	}
	in, err := e.ctl.GetInstance(ctx, "residency")
	if err != nil || !in.Properties.EnableDataResidency {
		t.Errorf("residency instance after restart: %+v %v", in, err)
	}
	if c, err := e.ctl.GetCertificate(ctx, devenv.DefaultInstance, "root"); err != nil || !c.Properties.IsVerified {
		t.Errorf("certificate after restart: %+v %v", c, err)
	}
	if hubs, err := e.ctl.ListHubs(ctx, devenv.DefaultInstance); err != nil || len(hubs) != 2 {
		t.Errorf("hubs after restart: %d %v", len(hubs), err)
	}
	if _, err := e.ctl.GetKeys(ctx, devenv.DefaultInstance, "reader"); err != nil {
		t.Errorf("policy after restart: %v", err)
	}
}

// TestCoreRefusals checks the answers a production service gives to bad
// requests at the deployment's front doors.
func TestCoreRefusals(t *testing.T) {
	ctx := context.Background()
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()

	noToken := dpsclient.NewControl(e.conn.ControlEndpoint, "", e.hc)
	if _, err := noToken.ListInstances(ctx, false); !isStatus(err, 401) {
		t.Errorf("control API without token: %v, want 401", err)
	}
	_, err := e.ctl.CreateInstance(ctx, "westresidency", dpsclient.InstanceSpec{Location: "westeurope", EnableDataResidency: ptr(true)})
	if !isStatus(err, 400) || !strings.Contains(err.Error(), "Brazil South") {
		t.Errorf("residency in westeurope: %v, want a 400 naming where it is allowed", err)
	}
	bad, _ := dpsclient.NewService(strings.Replace(e.conn.ServiceConnectionString, "SharedAccessKey=", "SharedAccessKey=AAAA", 1), e.hc)
	if _, err := bad.GetEnrollment(ctx, "x"); !errors.Is(err, dpsclient.ErrServiceUnauthorized) {
		t.Errorf("wrong service key: %v, want unauthorized", err)
	}
	if _, _, err := e.svc.QueryEnrollments(ctx, 10, ""); err != nil {
		t.Errorf("service API over TLS: %v", err)
	}
}

func isStatus(err error, status int) bool {
	var ce *dpsclient.ControlError
	if errors.As(err, &ce) {
		return ce.StatusCode == status
	}
	return false
}

func ptr[T any](v T) *T { return &v }
