package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/pkitest"
	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/controlapi"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
)

// controlFixture serves the control API over a fresh store (hub checks
// always pass) and returns the global flags that point the CLI at it.
func controlFixture(t *testing.T) []string {
	t.Helper()
	return controlFlags(t, serveControl(t, false))
}

// serveControl serves the control API over a fresh store (hub checks
// always pass) until the test ends and returns its URL; with records it
// keeps deployment records in the store.
func serveControl(t *testing.T, records bool) string {
	t.Helper()
	st := storetest.New(t, "")
	cat := regions.Builtin()
	ok := instance.HubCheckFunc(func(context.Context, string) error { return nil })
	m, err := instance.New(instance.Config{Store: st, Catalog: cat, ServiceDomain: "localhost:8443", DeviceHost: "localhost:8443", HubChecker: ok})
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlapi.Config{Manager: m, Catalog: cat, Token: "tok"}
	if records {
		cfg.Store = st
	}
	h, err := controlapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// controlFlags are the global flags that point the CLI at the control API
// at url (and at no connection.json).
func controlFlags(t *testing.T, url string) []string {
	return []string{"--connection", filepath.Join(t.TempDir(), "none.json"), "--control-url", url, "--token", "tok"}
}

func mustRun(t *testing.T, global []string, args ...string) string {
	t.Helper()
	out, err := run(t, global, args...)
	if err != nil {
		t.Fatalf("opendps %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestControlPlaneCLI(t *testing.T) {
	g := controlFixture(t)
	out := mustRun(t, g, "instance", "create", "cli-dps", "--region", "brazilsouth", "--data-residency")
	if !strings.Contains(out, "disaster recovery:  disabled") || !strings.Contains(out, "id scope:") || !strings.Contains(out, "primary (in the region answering)") {
		t.Errorf("create output:\n%s", out)
	}
	if _, err := run(t, g, "instance", "create", "cli-we", "--region", "westeurope", "--data-residency"); err == nil || !strings.Contains(err.Error(), "Brazil South") {
		t.Errorf("residency in westeurope: %v", err)
	}
	var svc struct {
		Name       string
		Properties struct{ IDScope string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, g, "instance", "show", "cli-dps", "--json")), &svc); err != nil || svc.Properties.IDScope == "" {
		t.Fatalf("show --json: %+v %v", svc, err)
	}
	if out := mustRun(t, g, "instance", "list"); !strings.Contains(out, "cli-dps") {
		t.Errorf("list:\n%s", out)
	}
	if out := mustRun(t, g, "instance", "list", "--resource-group", "other"); strings.Contains(out, "cli-dps") {
		t.Errorf("list in another group:\n%s", out)
	}
	if out := mustRun(t, g, "instance", "keys", "cli-dps"); !strings.Contains(out, "HostName=cli-dps.localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=") {
		t.Errorf("keys:\n%s", out)
	}

	mustRun(t, g, "policy", "add", "cli-dps", "reader", "--rights", "enrollmentread")
	if _, err := run(t, g, "policy", "add", "cli-dps", "reader", "--rights", "enrollmentread"); err == nil {
		t.Error("policy add of an existing policy succeeded")
	}
	mustRun(t, g, "policy", "set", "cli-dps", "reader", "--rights", "EnrollmentRead,EnrollmentWrite")
	if out := mustRun(t, g, "policy", "list", "cli-dps"); !strings.Contains(out, "EnrollmentRead, EnrollmentWrite") {
		t.Errorf("policy list:\n%s", out)
	}
	if out := mustRun(t, g, "policy", "regenerate", "cli-dps", "reader", "--key", "primary"); !strings.Contains(out, "primary key:") {
		t.Errorf("regenerate:\n%s", out)
	}
	mustRun(t, g, "policy", "remove", "cli-dps", "reader")

	cs := "HostName=hub1.localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=" + instance.NewKey()
	mustRun(t, g, "hub", "add", "cli-dps", "--connection-string", cs, "--weight", "3", "--apply-allocation-policy=false")
	if out := mustRun(t, g, "hub", "list", "cli-dps"); !strings.Contains(out, "hub1.localhost:8443") || !strings.Contains(out, "false") {
		t.Errorf("hub list:\n%s", out)
	}
	if _, err := run(t, g, "hub", "add", "cli-dps", "--connection-string", cs, "--weight", "0"); err == nil {
		t.Error("weight 0 accepted")
	}
	mustRun(t, g, "hub", "remove", "cli-dps", "hub1.localhost:8443")

	testCertificateCLI(t, g)
	mustRun(t, g, "instance", "delete", "cli-dps")
	if _, err := run(t, g, "instance", "show", "cli-dps"); err == nil {
		t.Error("deleted instance still shown")
	}
}

func testCertificateCLI(t *testing.T, g []string) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "CLI CA")
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, []byte(ca.PEM), 0o600)

	mustRun(t, g, "certificate", "upload", "cli-dps", "root", "--file", caFile)
	var code struct {
		Properties struct{ VerificationCode string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, g, "certificate", "verification-code", "cli-dps", "root", "--json")), &code); err != nil || code.Properties.VerificationCode == "" {
		t.Fatalf("verification-code: %+v %v", code, err)
	}
	proof := filepath.Join(dir, "proof.pem")
	os.WriteFile(proof, []byte(ca.IssuePEM(t, code.Properties.VerificationCode)), 0o600)
	if out := mustRun(t, g, "certificate", "verify", "cli-dps", "root", "--file", proof); !strings.Contains(out, "verified:    true") {
		t.Errorf("verify:\n%s", out)
	}
	if out := mustRun(t, g, "certificate", "list", "cli-dps"); !strings.Contains(out, "CN=CLI CA") {
		t.Errorf("certificate list:\n%s", out)
	}
	mustRun(t, g, "certificate", "upload", "cli-dps", "root", "--file", caFile, "--verified", "--force")
	mustRun(t, g, "certificate", "show", "cli-dps", "root")
	mustRun(t, g, "certificate", "delete", "cli-dps", "root")
}
