package dpsclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

const (
	testScope = "0ne00000ACC"
	testKey   = "Y2FwdHVyZS1ncm91cC1wcmltYXJ5LWtleS1ieXRlcyE="
)

// step is one canned answer of the fake DPS.
type step struct {
	status     int
	retryAfter string
	body       any
}

// fakeDPS answers device API requests with canned steps, in order, and
// records what it was sent. It checks the SAS token against key (when
// key is set) and the request shape, answering 400 on any mismatch.
type fakeDPS struct {
	t     *testing.T
	key   string // device key the token must be signed with; "" skips
	mu    sync.Mutex
	steps []step
	reqs  []recorded
}

type recorded struct {
	method, path, query, body, auth string
	peerCN                          string
}

func (f *fakeDPS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, body: string(b), auth: r.Header.Get("Authorization")}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		rec.peerCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	var s step
	if len(f.steps) > 0 {
		s, f.steps = f.steps[0], f.steps[1:]
	} else {
		s = step{status: 500, body: map[string]any{"errorCode": 500000, "message": "no more steps"}}
	}
	f.mu.Unlock()
	if err := f.check(r, rec); err != nil {
		s = step{status: 400, body: map[string]any{"errorCode": 400000, "message": err.Error()}}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if s.retryAfter != "" {
		w.Header().Set("Retry-After", s.retryAfter)
	}
	w.WriteHeader(s.status)
	json.NewEncoder(w).Encode(s.body)
}

func (f *fakeDPS) check(r *http.Request, rec recorded) error {
	if r.URL.Query().Get("api-version") != DeviceAPIVersion {
		return errors.New("api-version " + r.URL.Query().Get("api-version"))
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.Header.Get("Request-Id") == "" {
		return errors.New("missing headers")
	}
	if f.key == "" {
		return nil
	}
	tok, err := sas.Parse(rec.auth)
	if err != nil {
		return err
	}
	parts := strings.Split(r.URL.Path, "/") // "", scope, "registrations", id, ...
	if tok.ResourceRaw != parts[1]+"/registrations/"+parts[3] || tok.KeyName != "registration" {
		return errors.New("token audience " + tok.ResourceRaw)
	}
	if time.Until(tok.Expiry) < 59*time.Minute || !tok.VerifyBase64(f.key) {
		return errors.New("bad token")
	}
	return nil
}

func (f *fakeDPS) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// start serves f over TLS and returns options pointing at it.
func (f *fakeDPS) start(t *testing.T, id string) DeviceOptions {
	t.Helper()
	f.t = t
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return DeviceOptions{Endpoint: strings.TrimPrefix(srv.URL, "https://"), IDScope: testScope,
		RegistrationID: id, SymmetricKey: f.key, HTTPClient: srv.Client()}
}

func assigned(id, op string) *model.RegistrationOperationStatus {
	return &model.RegistrationOperationStatus{OperationID: op, Status: "assigned",
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: id, AssignedHub: "hub1.localhost",
			DeviceID: id, Status: "assigned", Substatus: "initialAssignment"}}
}

func assigning(id, op string) *model.RegistrationOperationStatus {
	return &model.RegistrationOperationStatus{OperationID: op, Status: "assigning",
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: id, Status: "assigning"}}
}

func TestRegisterFastPath(t *testing.T) {
	f := &fakeDPS{key: testKey, steps: []step{{status: 202, body: assigned("dev1", "op1")}}}
	opts := f.start(t, "dev1")
	opts.Payload = json.RawMessage(`{"modelId":"dtmi:x;1"}`)
	res, err := Register(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "assigned" || res.State().AssignedHub != "hub1.localhost" || res.RoundTrips != 1 || res.Polls != 0 {
		t.Errorf("result = %+v, want assigned on hub1 in one round trip", res)
	}
	reqs := f.requests()
	if len(reqs) != 1 || reqs[0].method != "PUT" || reqs[0].path != "/"+testScope+"/registrations/dev1/register" {
		t.Fatalf("requests = %+v", reqs)
	}
	if want := `{"registrationId":"dev1","payload":{"modelId":"dtmi:x;1"}}`; reqs[0].body != want {
		t.Errorf("body = %s, want %s", reqs[0].body, want)
	}
}

func TestRegisterPolls(t *testing.T) {
	f := &fakeDPS{key: testKey, steps: []step{
		{status: 202, retryAfter: "1", body: &model.RegistrationOperationStatus{OperationID: "5.abc.1234", Status: "assigning"}},
		{status: 202, retryAfter: "0", body: assigning("dev2", "5.abc.1234")},
		{status: 200, body: assigned("dev2", "5.abc.1234")},
	}}
	opts := f.start(t, "dev2")
	start := time.Now()
	res, err := Register(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < time.Second {
		t.Errorf("took %v: Retry-After: 1 was not honoured", el)
	}
	if res.Status != "assigned" || res.RoundTrips != 3 || res.Polls != 2 || res.OperationID != "5.abc.1234" {
		t.Errorf("result = %+v, want assigned after 2 polls", res)
	}
	for _, r := range f.requests()[1:] {
		if r.method != "GET" || r.path != "/"+testScope+"/registrations/dev2/operations/5.abc.1234" || r.body != "{}" {
			t.Errorf("poll = %+v, want GET of the operation with body {}", r)
		}
	}
}

func TestRegisterGroupKeyAndPollInterval(t *testing.T) {
	derived, _ := sas.DeriveKey(testKey, "grp-dev")
	f := &fakeDPS{key: derived, steps: []step{
		{status: 202, retryAfter: "3", body: assigning("grp-dev", "op")},
		{status: 200, body: assigned("grp-dev", "op")},
	}}
	opts := f.start(t, "grp-dev")
	opts.SymmetricKey, opts.GroupKey, opts.PollInterval = "", testKey, 10*time.Millisecond
	start := time.Now()
	res, err := Register(context.Background(), opts)
	if err != nil || res.Polls != 1 {
		t.Fatalf("Register = %+v, %v", res, err)
	}
	if time.Since(start) > 2*time.Second {
		t.Error("PollInterval did not override Retry-After")
	}
}

func TestRegisterErrors(t *testing.T) {
	failed := assigned("d", "op")
	failed.Status, failed.RegistrationState.Status = "failed", "failed"
	failed.RegistrationState.ErrorCode, failed.RegistrationState.ErrorMessage = 400208, "no hub"
	tests := []struct {
		name       string
		steps      []step
		retry      bool
		wantIs     error
		wantCode   int
		wantRetry  time.Duration
		wantRounds int
	}{
		{"unauthorized", []step{{status: 401, body: map[string]any{"errorCode": 401000, "message": "Unauthorized", "trackingId": "t"}}},
			false, ErrDeviceUnauthorized, 401000, 0, 1},
		{"throttled", []step{{status: 429, retryAfter: "7", body: map[string]any{"errorCode": 429001, "message": "Too many requests"}}},
			false, ErrThrottled, 429001, 7 * time.Second, 1},
		{"throttled twice with retry bound 1", []step{
			{status: 429, retryAfter: "0", body: map[string]any{"errorCode": 429001}},
			{status: 429, retryAfter: "0", body: map[string]any{"errorCode": 429001}}},
			true, ErrThrottled, 429001, 0, 2},
		{"failed", []step{{status: 202, body: failed}}, false, ErrRegistrationFailed, 400208, 0, 1},
		{"disabled", []step{{status: 202, body: &model.RegistrationOperationStatus{OperationID: "op", Status: "disabled"}}},
			false, ErrRegistrationDisabled, 0, 0, 1},
		{"not JSON", []step{{status: 500, body: "oops"}}, false, nil, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeDPS{steps: tt.steps}
			opts := f.start(t, "d")
			opts.SymmetricKey, opts.RetryThrottled, opts.MaxThrottleRetries = testKey, tt.retry, 1
			res, err := Register(context.Background(), opts)
			if err == nil {
				t.Fatalf("Register succeeded: %+v", res)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantIs)
			}
			var de *DeviceError
			var re *RegistrationError
			switch {
			case errors.As(err, &de):
				if de.ErrorCode != tt.wantCode || de.RetryAfter != tt.wantRetry {
					t.Errorf("DeviceError = %+v, want code %d retry %v", de, tt.wantCode, tt.wantRetry)
				}
			case errors.As(err, &re):
				if re.ErrorCode != tt.wantCode {
					t.Errorf("RegistrationError = %+v, want code %d", re, tt.wantCode)
				}
			}
			if res == nil || res.RoundTrips != tt.wantRounds {
				t.Errorf("result = %+v, want %d round trips", res, tt.wantRounds)
			}
		})
	}
}

func TestRegisterRetryThrottled(t *testing.T) {
	f := &fakeDPS{key: testKey, steps: []step{
		{status: 429, retryAfter: "1", body: map[string]any{"errorCode": 429001, "message": "slow down"}},
		{status: 202, body: assigned("d", "op")},
	}}
	opts := f.start(t, "d")
	opts.RetryThrottled = true
	res, err := Register(context.Background(), opts)
	if err != nil || res.ThrottleRetries != 1 || res.RoundTrips != 2 {
		t.Fatalf("Register = %+v, %v; want assigned after one throttle retry", res, err)
	}
}

func TestRegisterContextBoundsPolling(t *testing.T) {
	f := &fakeDPS{key: testKey, steps: []step{{status: 202, retryAfter: "30", body: assigning("d", "op")}}}
	opts := f.start(t, "d")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := Register(ctx, opts)
	if !errors.Is(err, context.DeadlineExceeded) || res.Status != "assigning" {
		t.Fatalf("Register = %+v, %v; want deadline exceeded while assigning", res, err)
	}
}

func TestRegistrationStatus(t *testing.T) {
	f := &fakeDPS{key: testKey, steps: []step{
		{status: 200, body: assigned("d", "op").RegistrationState},
		{status: 404, body: map[string]any{"errorCode": 404202, "message": "not registered"}},
	}}
	opts := f.start(t, "d")
	st, err := RegistrationStatus(context.Background(), opts)
	if err != nil || st.AssignedHub != "hub1.localhost" {
		t.Fatalf("RegistrationStatus = %+v, %v", st, err)
	}
	if r := f.requests()[0]; r.method != "POST" || r.path != "/"+testScope+"/registrations/d" {
		t.Errorf("request = %+v, want POST /{scope}/registrations/d", r)
	}
	if _, err := RegistrationStatus(context.Background(), opts); !errors.Is(err, ErrDeviceNotFound) {
		t.Errorf("second lookup: err = %v, want ErrDeviceNotFound", err)
	}
}

// TestRegisterX509WithCAFile builds the HTTP client from CAFile and a
// client certificate whose CN is the registration id.
func TestRegisterX509WithCAFile(t *testing.T) {
	f := &fakeDPS{steps: []step{{status: 202, body: assigned("x509-dev", "op")}}}
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	cert := selfSigned(t, "x509-dev")
	res, err := Register(context.Background(), DeviceOptions{Endpoint: strings.TrimPrefix(srv.URL, "https://"),
		IDScope: testScope, Certificate: &cert, CAFile: caFile})
	if err != nil || res.State().DeviceID != "x509-dev" {
		t.Fatalf("Register = %+v, %v", res, err)
	}
	r := f.requests()[0]
	if r.auth != "" || r.peerCN != "x509-dev" || !strings.Contains(r.path, "/registrations/x509-dev/") {
		t.Errorf("request = %+v, want no Authorization, client certificate x509-dev", r)
	}
}

func TestDeviceOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts DeviceOptions
	}{
		{"no scope", DeviceOptions{RegistrationID: "d", SymmetricKey: testKey}},
		{"no id", DeviceOptions{IDScope: testScope, SymmetricKey: testKey}},
		{"no credential", DeviceOptions{IDScope: testScope, RegistrationID: "d"}},
		{"two credentials", DeviceOptions{IDScope: testScope, RegistrationID: "d", SymmetricKey: testKey, GroupKey: testKey}},
		{"bad key", DeviceOptions{IDScope: testScope, RegistrationID: "d", SymmetricKey: "not base64!"}},
		{"bad payload", DeviceOptions{IDScope: testScope, RegistrationID: "d", SymmetricKey: testKey, Payload: json.RawMessage("{")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Register(context.Background(), tt.opts); !errors.Is(err, ErrDeviceOptions) {
				t.Errorf("err = %v, want ErrDeviceOptions", err)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{{"", -1}, {"x", -1}, {"-1", -1}, {"0", 0}, {"3", 3 * time.Second}, {" 2 ", 2 * time.Second}, {"9999", 300 * time.Second}}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
