package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
)

// groupEngine assigns devices whose token verifies with a group key.
type groupEngine struct{ groupKey string }

func (g groupEngine) Authenticate(_ context.Context, r *engine.Request) error {
	key, _ := sas.DeriveKey(g.groupKey, r.RegistrationID)
	if tok, err := sas.Parse(r.SASToken); err != nil || !tok.VerifyBase64(key) {
		return apierr.New(apierr.CodeUnauthorized, "Unauthorized")
	}
	return nil
}

func (g groupEngine) Register(ctx context.Context, r *engine.Request) (*engine.Result, error) {
	if err := g.Authenticate(ctx, r); err != nil {
		return nil, err
	}
	return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "op", Status: "assigned", RegistrationState: &model.DeviceRegistrationResult{
		RegistrationID: r.RegistrationID, AssignedHub: "hub1.localhost", DeviceID: r.RegistrationID, Status: "assigned"}}}, nil
}

func (g groupEngine) OperationStatus(ctx context.Context, r *engine.Request, _ string) (*engine.Result, error) {
	return g.Register(ctx, r)
}

func (groupEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return nil, nil
}

func TestDeviceRegisterCLIMQTT(t *testing.T) {
	const groupKey = "Y2FwdHVyZS1ncm91cC1wcmltYXJ5LWtleS1ieXRlcyE="
	ca, err := pki.NewCA("cli mqtt test")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ca.Issue([]string{"localhost"}, time.Hour)
	srv, err := mqttfront.New(mqttfront.Config{Engine: groupEngine{groupKey}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM, 0o600)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	args := []string{"device", "register", "--protocol", "mqtt", "--registration-id", "dev-1", "--connection", filepath.Join(t.TempDir(), "none.json"),
		"--ca-file", caFile, "--endpoint", "localhost:" + port, "--id-scope", "0ne00000001"}

	out, err := runDeviceCLI(t, append(args, "--group-key", groupKey)...)
	if err != nil || !strings.Contains(out, "assigned hub       hub1.localhost") || !strings.Contains(out, "round trips        1") {
		t.Fatalf("register over MQTT: %v\n%s", err, out)
	}
	if _, err := runDeviceCLI(t, append(args, "--key", groupKey)...); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key over MQTT: err = %v, want a 401 (CONNACK 5)", err)
	}
	if _, err := runDeviceCLI(t, append(args[:2], "--protocol", "amqp", "--registration-id", "x", "--connection", "none.json", "--id-scope", "s", "--key", groupKey)...); err == nil {
		t.Error("--protocol amqp accepted")
	}
}
