package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// deviceFake answers register calls: "assigned" for devices whose token
// verifies with the group key, "failed" for registration id "bad-dev".
func deviceFake(t *testing.T, groupKey string) (endpoint, caFile string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.Split(r.URL.Path, "/")[3]
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		key, _ := sas.DeriveKey(groupKey, id)
		if tok, err := sas.Parse(r.Header.Get("Authorization")); err != nil || !tok.VerifyBase64(key) {
			w.WriteHeader(401)
			w.Write([]byte(`{"errorCode":401000,"message":"Unauthorized"}`))
			return
		}
		st := &model.RegistrationOperationStatus{OperationID: "op", Status: "assigned", RegistrationState: &model.DeviceRegistrationResult{
			RegistrationID: id, AssignedHub: "hub1.localhost", DeviceID: id, Status: "assigned", Substatus: "initialAssignment"}}
		if id == "bad-dev" {
			st.Status, st.RegistrationState = "failed", &model.DeviceRegistrationResult{RegistrationID: id, Status: "failed",
				ErrorCode: 400208, ErrorMessage: "no hub"}
		}
		w.WriteHeader(202)
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	return strings.TrimPrefix(srv.URL, "https://"), caFile
}

func runDeviceCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestDeviceRegisterCLI(t *testing.T) {
	const groupKey = "Y2FwdHVyZS1ncm91cC1wcmltYXJ5LWtleS1ieXRlcyE="
	ep, ca := deviceFake(t, groupKey)
	global := []string{"--connection", filepath.Join(t.TempDir(), "none.json"), "--ca-file", ca,
		"--endpoint", ep, "--id-scope", "0ne00000001", "--group-key", groupKey}

	out, err := runDeviceCLI(t, append([]string{"device", "register", "--registration-id", "dev-1"}, global...)...)
	if err != nil || !strings.Contains(out, "assigned hub       hub1.localhost") || !strings.Contains(out, "round trips        1") {
		t.Fatalf("register: %v\n%s", err, out)
	}
	out, err = runDeviceCLI(t, append([]string{"device", "register", "--registration-id", "dev-1", "--json", "--payload", `{"a":1}`}, global...)...)
	var res struct {
		Status            string                    `json:"status"`
		RoundTrips        int                       `json:"roundTrips"`
		RegistrationState struct{ DeviceID string } `json:"registrationState"`
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Status != "assigned" || res.RoundTrips != 1 || res.RegistrationState.DeviceID != "dev-1" {
		t.Fatalf("register --json: %v\n%s", err, out)
	}
	out, err = runDeviceCLI(t, append([]string{"device", "register", "--registration-id", "bad-dev"}, global...)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, "error              400208 no hub") {
		t.Fatalf("failed registration: err %v\n%s", err, out)
	}
	_, err = runDeviceCLI(t, "device", "register", "--registration-id", "dev-1", "--connection", filepath.Join(t.TempDir(), "none.json"),
		"--ca-file", ca, "--endpoint", ep, "--id-scope", "0ne00000001", "--key", groupKey)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: err = %v, want a 401", err)
	}
	if _, err := runDeviceCLI(t, "device", "register", "--registration-id", "x", "--payload", "{", "--connection", "none.json", "--id-scope", "s", "--key", groupKey); err == nil {
		t.Error("bad --payload accepted")
	}
}
