package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/servicetest"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// serviceFixture serves the service API of a fresh instance over TLS and
// returns the global flags that point the CLI at it.
func serviceFixture(t *testing.T) (*enrollment.Service, *enrollmenttest.Instance, []string) {
	t.Helper()
	srv := servicetest.Start(t, "cli")
	return srv.Enrollments, srv.Instance, []string{"--connection", filepath.Join(t.TempDir(), "none.json"),
		"--ca-file", srv.CAFile, "--service-connection-string", srv.ConnectionString()}
}

// run runs the CLI with args and returns stdout.
func run(t *testing.T, global []string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append(append([]string{}, args...), global...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestEnrollmentCLI(t *testing.T) {
	svc, in, global := serviceFixture(t)
	out, err := run(t, global, "enrollment", "create", "cli-dev-1", "--iot-hub", enrollmenttest.Hub1,
		"--allocation-policy", "static", "--edge", "--initial-twin", `{"tags":{"floor":3}}`, "--device-id", "dev-one")
	if err != nil || !strings.Contains(out, "primary key") || !strings.Contains(out, "iot edge") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if _, err := run(t, global, "enrollment", "create", "cli-dev-1"); err == nil {
		t.Error("create of an existing enrollment succeeded")
	}
	out, err = run(t, global, "enrollment", "set-status", "cli-dev-1", "disabled", "--json")
	var e model.IndividualEnrollment
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || e.ProvisioningStatus != "disabled" || e.DeviceID != "dev-one" {
		t.Fatalf("set-status: %v\n%s", err, out)
	}
	ca, _ := pki.NewCA("cli-x509")
	pemFile := filepath.Join(t.TempDir(), "dev.pem")
	os.WriteFile(pemFile, ca.CertPEM, 0o600)
	if out, err := run(t, global, "enrollment", "create", "cli-x509", "--certificate", pemFile); err != nil || !strings.Contains(out, "SHA-256 "+pki.SHA256Thumbprint(ca.Cert)) {
		t.Errorf("create x509: %v\n%s", err, out)
	}
	if _, err := run(t, global, "enrollment", "create", "cli-tpm", "--tpm-ek", "AAAA"); err != nil {
		t.Errorf("create tpm: %v", err)
	}
	out, err = run(t, global, "enrollment", "list", "--page-size", "1")
	if err != nil || strings.Count(out, "\n") != 4 {
		t.Errorf("list: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"group", "create", "cli-grp", "--key", enrollmenttest.RandomKey()},
		{"group", "create", "cli-grp-ca", "--ca-ref", enrollmenttest.VerifiedCA},
		{"group", "create", "cli-grp-signing", "--signing-certificate", pemFile, "--disabled"},
		{"group", "set-status", "cli-grp", "disabled"},
		{"group", "show", "cli-grp"},
	} {
		if out, err := run(t, global, args...); err != nil {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if out, _ := run(t, global, "group", "list", "--json"); strings.Count(out, `"enrollmentGroupId"`) != 3 {
		t.Errorf("group list: %s", out)
	}
	if _, err := run(t, global, "group", "create", "cli-bad", "--ca-ref", enrollmenttest.UnverifiedCA); err == nil || !strings.Contains(err.Error(), "not verified") {
		t.Errorf("unverified CA: %v", err)
	}

	for _, id := range []string{"r1", "r2"} {
		svc.PutRegistration(context.Background(), in.Name, &model.Registration{DeviceRegistrationState: model.DeviceRegistrationState{
			RegistrationID: id, Status: "assigned", AssignedHub: enrollmenttest.Hub1, DeviceID: id}, EnrollmentGroupID: "cli-grp"})
	}
	if out, err := run(t, global, "registration", "list", "--group", "cli-grp", "--page-size", "1"); err != nil || strings.Count(out, enrollmenttest.Hub1) != 2 {
		t.Errorf("registration list: %v\n%s", err, out)
	}
	if out, err := run(t, global, "registration", "show", "r1"); err != nil || !strings.Contains(out, "assigned") {
		t.Errorf("registration show: %v\n%s", err, out)
	}
	if _, err := run(t, global, "registration", "delete", "r1"); err != nil {
		t.Error(err)
	}
	if _, err := run(t, global, "registration", "show", "r1"); err == nil {
		t.Error("registration show after delete succeeded")
	}
	if out, err := run(t, global, "enrollment", "delete", "cli-dev-1", "--json"); err != nil || out != "{\n  \"deleted\": \"cli-dev-1\"\n}\n" {
		t.Errorf("delete --json = %q, %v", out, err)
	}
	if _, err := run(t, global, "group", "delete", "cli-grp", "--etag", `"stale"`); err == nil || !strings.Contains(err.Error(), "412") {
		t.Errorf("stale group delete: %v", err)
	}
	out, err = run(t, global, "enrollment", "compute-key", "--group-key", "Y2FwdHVyZS1ncm91cC1wcmltYXJ5LWtleS1ieXRlcyE=", "--registration-id", "capture-grpdev-01")
	if err != nil || strings.TrimSpace(out) != "VeyaSLiVReNSBXaianGj6Xp5/S+fMBYN6tRVH4VnAPg=" {
		t.Errorf("compute-key = %q, %v", out, err)
	}
}
