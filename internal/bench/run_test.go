package bench

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/internal/store"
	"github.com/opendps/opendps/pkg/dpsclient"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const fakeScope = "0ne00000BEN"

// fakeDPS serves enough of the service API (groups, bulk enrollments,
// registration deletes) and the device API (register, poll) to drive a
// run. Device tokens are verified against the keys setup sent. Every 7th
// device is "assigning" on its first registration (one poll), and the
// device named throttled gets one 429.
type fakeDPS struct {
	throttled string

	mu          sync.Mutex
	groupKeys   []string
	individual  map[string]string // registration id -> key
	registered  map[string]bool
	deletedRegs int
	deletedEnr  int
	groupsGone  int
	hits        map[string]int // by r.Host
	wasThrottle bool
}

func newFakeDPS() *fakeDPS {
	return &fakeDPS{individual: map[string]string{}, registered: map[string]bool{}, hits: map[string]int{}}
}

func (f *fakeDPS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hits[r.Host]++
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	var status int
	var body any
	if parts[0] == fakeScope {
		status, body = f.device(w, r, parts)
	} else {
		status, body = f.service(r, parts)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (f *fakeDPS) service(r *http.Request, parts []string) (int, any) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), sas.Prefix) {
		return 401, map[string]any{"errorCode": 401000, "message": "Unauthorized"}
	}
	switch {
	case r.Method == "PUT" && parts[0] == "enrollmentGroups":
		var g model.EnrollmentGroup
		json.NewDecoder(r.Body).Decode(&g)
		f.groupKeys = append(f.groupKeys, g.Attestation.SymmetricKey.PrimaryKey)
		return 200, g
	case r.Method == "DELETE" && parts[0] == "enrollmentGroups":
		f.groupsGone++
		return 204, nil
	case r.Method == "POST" && r.URL.Path == "/enrollments":
		var op model.BulkEnrollmentOperation
		json.NewDecoder(r.Body).Decode(&op)
		for _, e := range op.Enrollments {
			if op.Mode == "create" {
				f.individual[e.RegistrationID] = e.Attestation.SymmetricKey.PrimaryKey
			} else {
				f.deletedEnr++
			}
		}
		return 200, model.BulkOperationResult{IsSuccessful: true}
	case r.Method == "DELETE" && parts[0] == "registrations":
		f.deletedRegs++
		return 204, nil
	}
	return 404, map[string]any{"errorCode": 404000, "message": "no route " + r.URL.Path}
}

func (f *fakeDPS) device(w http.ResponseWriter, r *http.Request, parts []string) (int, any) {
	io.Copy(io.Discard, r.Body)
	id := parts[2]
	if !f.authorized(r.Header.Get("Authorization"), id) {
		return 401, map[string]any{"errorCode": 401000, "message": "Unauthorized"}
	}
	st := &model.RegistrationOperationStatus{OperationID: "op-" + id, Status: "assigned",
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: id, DeviceID: id, AssignedHub: "hub1.localhost", Status: "assigned"}}
	if r.Method == "GET" {
		return 200, st
	}
	if id == f.throttled && !f.wasThrottle {
		f.wasThrottle = true
		w.Header().Set("Retry-After", "1")
		return 429, map[string]any{"errorCode": 429001, "message": "Too many requests"}
	}
	first := !f.registered[id]
	f.registered[id] = true
	if first && strings.HasSuffix(id, "7") {
		w.Header().Set("Retry-After", "0")
		st.Status, st.RegistrationState.Status = "assigning", "assigning"
	}
	return 202, st
}

func (f *fakeDPS) authorized(auth, id string) bool {
	tok, err := sas.Parse(auth)
	if err != nil || tok.Resource != fakeScope+"/registrations/"+id {
		return false
	}
	if k, ok := f.individual[id]; ok {
		return tok.VerifyBase64(k)
	}
	for _, g := range f.groupKeys {
		if k, _ := sas.DeriveKey(g, id); tok.VerifyBase64(k) {
			return true
		}
	}
	return false
}

// startFake serves f on two "nodes" and returns the connection file's
// content pointing at them (etcd URL etcd, may be "").
func startFake(t *testing.T, f *fakeDPS, etcd string) *dpsclient.Connection {
	t.Helper()
	var nodes []dpsclient.NodeInfo
	var caFile string
	for i := range 2 {
		srv := httptest.NewTLSServer(f)
		t.Cleanup(srv.Close)
		if caFile == "" { // httptest servers share one certificate
			caFile = filepath.Join(t.TempDir(), "ca.pem")
			os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
		}
		nodes = append(nodes, dpsclient.NodeInfo{Name: fmt.Sprintf("node%d", i+1), Region: "westeurope",
			DeviceEndpoint: strings.TrimPrefix(srv.URL, "https://"), EtcdClientURL: etcd})
	}
	return &dpsclient.Connection{IDScope: fakeScope, DeviceEndpoint: nodes[0].DeviceEndpoint, CACertificate: caFile,
		ServiceConnectionString: "HostName=" + nodes[0].DeviceEndpoint + ";SharedAccessKeyName=owner;SharedAccessKey=" + randomKey(),
		Nodes:                   nodes}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestRunSmoke(t *testing.T) {
	for _, kind := range []string{EnrollmentGroup, EnrollmentIndividual} {
		t.Run(kind, func(t *testing.T) {
			f := newFakeDPS()
			f.throttled = "bench-smoke-3"
			cfg := Config{Conn: startFake(t, f, ""), Devices: 50, Concurrency: 8, Duration: 30 * time.Second,
				Rounds: 2, Enrollment: kind, RunID: "smoke", RawStoreCheck: true, Cleanup: true, Logger: testLogger(t)}
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			rep.WriteText(&text)
			t.Log("\n" + text.String())
			checkSmoke(t, f, rep)
			if kind == EnrollmentIndividual && f.deletedEnr != 50 {
				t.Errorf("cleanup deleted %d enrollments, want 50", f.deletedEnr)
			}
			if kind == EnrollmentGroup && f.groupsGone != 1 {
				t.Errorf("cleanup deleted %d groups, want 1", f.groupsGone)
			}
		})
	}
}

func checkSmoke(t *testing.T, f *fakeDPS, rep *Report) {
	t.Helper()
	// 2 rounds of 50 devices; bench-smoke-3's first attempt was throttled.
	if rep.Attempts != 100 || rep.First != 50 || rep.Repeat != 49 || rep.Failed != 1 {
		t.Errorf("attempts %d first %d repeat %d failed %d, want 100/50/49/1", rep.Attempts, rep.First, rep.Repeat, rep.Failed)
	}
	if rep.Errors["http_429_429001"] != 1 {
		t.Errorf("errors = %v, want one http_429_429001", rep.Errors)
	}
	// Devices 7, 17, 27, 37, 47 polled once on their first registration.
	if want := 104.0 / 99; rep.RoundTripsPerRegistration < want-0.001 || rep.RoundTripsPerRegistration > want+0.001 {
		t.Errorf("round trips per registration = %v, want %.3f", rep.RoundTripsPerRegistration, want)
	}
	if rep.ElapsedSeconds > 20 {
		t.Errorf("load phase took %vs: the rounds bound did not stop it", rep.ElapsedSeconds)
	}
	for _, ep := range rep.Endpoints {
		if rep.EndpointHits[ep] == 0 {
			t.Errorf("endpoint %s got no registrations: %v", ep, rep.EndpointHits)
		}
	}
	if rep.ConnectionMode != ModeNewConnection || rep.RawSkipped == "" || rep.Raw != nil {
		t.Errorf("mode %q raw %v skipped %q", rep.ConnectionMode, rep.Raw, rep.RawSkipped)
	}
	if f.deletedRegs != 50 {
		t.Errorf("cleanup deleted %d registrations, want 50", f.deletedRegs)
	}
	if rep.Latency.Count != 99 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency = %+v", rep.Latency)
	}
}

func TestRunRateModeAndRawCheck(t *testing.T) {
	c, _ := netutil.FreeLoopbackAddr()
	p, _ := netutil.FreeLoopbackAddr()
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir(), ClientURL: "http://" + c, PeerURL: "http://" + p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := newFakeDPS()
	cfg := Config{Conn: startFake(t, f, "http://"+c), Devices: 20, Concurrency: 4, Duration: 500 * time.Millisecond,
		Rate: 100, ReuseConnections: true, RunID: "rate", RawStoreCheck: true, RawDuration: 300 * time.Millisecond,
		Logger: testLogger(t)}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// At 100/s, tickets are due every 10 ms: at most 51 within 500 ms.
	if n := rep.Attempts + rep.MissedStarts; n == 0 || n > 51 {
		t.Errorf("attempts %d + missed %d, want 1..51", rep.Attempts, rep.MissedStarts)
	}
	if rep.ConnectionMode != ModeReuse || rep.TargetRate != 100 || rep.Failed != 0 {
		t.Errorf("report = %+v", rep)
	}
	if rep.Raw == nil || rep.Raw.Writes == 0 || rep.Raw.Errors != 0 || rep.Raw.Deleted != rep.Raw.Writes+1 || rep.Ratio <= 0 {
		t.Fatalf("raw = %+v (skipped %q), ratio %v", rep.Raw, rep.RawSkipped, rep.Ratio)
	}
	left, err := st.Client().Get(context.Background(), RawPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || left.Count != 0 {
		t.Errorf("%d keys left under %s (%v)", left.Count, RawPrefix, err)
	}
	if b, err := json.Marshal(rep); err != nil || !strings.Contains(string(b), `"writesPerSecond"`) {
		t.Errorf("JSON report: %v %s", err, b)
	}
}

func TestValidate(t *testing.T) {
	conn := &dpsclient.Connection{IDScope: fakeScope, ServiceConnectionString: "x", DeviceEndpoint: "localhost:1"}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no connection", func(c *Config) { c.Conn = nil }},
		{"no endpoint", func(c *Config) { c.Conn = &dpsclient.Connection{IDScope: "s", ServiceConnectionString: "x"} }},
		{"too many devices", func(c *Config) { c.Devices = MaxDevices + 1 }},
		{"bad enrollment", func(c *Config) { c.Enrollment = "tpm" }},
		{"bad protocol", func(c *Config) { c.Protocol = "amqp" }},
		{"mqtt without an mqtt endpoint", func(c *Config) { c.Protocol = ProtocolMQTT }},
		{"mqtt reusing connections", func(c *Config) {
			c.Protocol, c.ReuseConnections = ProtocolMQTT, true
			c.Conn = &dpsclient.Connection{IDScope: fakeScope, ServiceConnectionString: "x", MQTTEndpoint: "localhost:2"}
		}},
		{"negative rate", func(c *Config) { c.Rate = -1 }},
		{"long duration", func(c *Config) { c.Duration = 2 * MaxDuration }},
		{"too many node retries", func(c *Config) { c.NodeRetries = MaxNodeRetries + 1 }},
		{"negative request timeout", func(c *Config) { c.AttemptTimeout = -time.Second }},
	}
	for _, tt := range tests {
		cfg := Config{Conn: conn}
		tt.mod(&cfg)
		cfg.setDefaults()
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil", tt.name)
		}
	}
	cfg := Config{Conn: conn}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Errorf("defaults: Validate() = %v", err)
	}
	cfg = Config{Conn: &dpsclient.Connection{IDScope: fakeScope, ServiceConnectionString: "x", MQTTEndpoint: "localhost:2"}, Protocol: ProtocolMQTT}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Errorf("mqtt: Validate() = %v", err)
	}
}
