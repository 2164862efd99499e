package hub_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/pki"
)

const hubHost = "hub1.localhost"

// simEnv is a simulator serving one hub over TLS on a random port.
type simEnv struct {
	ca   *pki.CA
	cfg  hubsim.HubConfig
	sim  *hubsim.Sim
	srv  *hubsim.Server
	conn string // owner connection string with the port
}

func startSim(t *testing.T) simEnv {
	t.Helper()
	ca, err := pki.NewCA("hub test CA")
	if err != nil {
		t.Fatal(err)
	}
	cfg := hubsim.NewHubConfig(hubHost)
	sim, err := hubsim.New(hubsim.Config{Hubs: []hubsim.HubConfig{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := hubsim.TLSConfig(ca, sim)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hubsim.Listen(sim, "127.0.0.1:0", tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return simEnv{ca: ca, cfg: cfg, sim: sim, srv: srv, conn: cfg.ConnectionStringPort(srv.Port())}
}

func (e simEnv) client(t *testing.T, connStr string, opts ...hub.Option) *hub.Client {
	t.Helper()
	c, err := hub.New(connStr, append([]hub.Option{hub.WithTLSConfig(e.ca.ClientTLS())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeviceLifecycle(t *testing.T) {
	e := startSim(t)
	c := e.client(t, e.conn)
	ctx := t.Context()

	d, err := c.CreateOrUpdateDevice(ctx, hub.Device{DeviceID: "dev-1"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if d.Auth == nil || d.Auth.Type != hub.AuthSAS || d.Auth.SymmetricKey == nil || d.Auth.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("create: got auth %+v, want sas with generated keys", d.Auth)
	}
	if d.ETag == "" || d.GenerationID == "" || d.Status != hub.StatusEnabled {
		t.Fatalf("create: got %+v, want etag, generationId, enabled", d)
	}
	got, err := c.GetDevice(ctx, "dev-1")
	if err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, d)
	}

	// Create again without etag: upsert, keys and generation kept.
	d.Auth.SymmetricKey = nil
	d.ETag = ""
	d.Status = hub.StatusDisabled
	up, err := c.CreateOrUpdateDevice(ctx, d)
	if err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if up.ETag == got.ETag || up.GenerationID != got.GenerationID || up.Status != hub.StatusDisabled {
		t.Errorf("upsert: got %+v, want new etag, same generation, disabled", up)
	}
	if up.Auth.SymmetricKey.PrimaryKey != got.Auth.SymmetricKey.PrimaryKey {
		t.Errorf("upsert changed the primary key")
	}

	// Stale etag.
	got.Status = hub.StatusEnabled
	if _, err := c.CreateOrUpdateDevice(ctx, got); !errors.Is(err, hub.ErrPreconditionFailed) {
		t.Errorf("update with stale etag: err = %v, want ErrPreconditionFailed", err)
	}
	if err := c.DeleteDeviceIfMatch(ctx, "dev-1", got.ETag); !errors.Is(err, hub.ErrPreconditionFailed) {
		t.Errorf("delete with stale etag: err = %v, want ErrPreconditionFailed", err)
	}

	if err := c.DeleteDevice(ctx, "dev-1"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.GetDevice(ctx, "dev-1"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("get after delete: err = %v, want ErrNotFound", err)
	}
	if err := c.DeleteDevice(ctx, "dev-1"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	var he *hub.Error
	if _, err := c.GetDevice(ctx, "dev-1"); !errors.As(err, &he) || he.Code != "DeviceNotFound" || he.Status != 404 {
		t.Errorf("get after delete: err = %#v, want *hub.Error DeviceNotFound 404", err)
	}
	if _, err := c.CreateOrUpdateDevice(ctx, hub.Device{DeviceID: "dev-1", ETag: hub.ETagAny}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("update of a missing device: err = %v, want ErrNotFound", err)
	}
}

func TestDeviceAuthKinds(t *testing.T) {
	e := startSim(t)
	c := e.client(t, e.conn)
	const tp = "0123456789ABCDEF0123456789ABCDEF01234567"
	key := "c2VjcmV0LWtleS1mb3ItdGVzdHMtMTIzNDU2Nzg5MA=="
	tests := []struct {
		name    string
		dev     hub.Device
		want    hub.Authentication
		edge    bool
		wantErr error
	}{
		{"sas given keys", hub.Device{Auth: &hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: key, SecondaryKey: key}}},
			hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: key, SecondaryKey: key}}, false, nil},
		{"self-signed", hub.Device{Auth: &hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: tp}}},
			hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: tp}}, false, nil},
		{"type inferred from thumbprint", hub.Device{Auth: &hub.Authentication{X509Thumbprint: &hub.X509Thumbprint{SecondaryThumbprint: tp}}},
			hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{SecondaryThumbprint: tp}}, false, nil},
		{"ca", hub.Device{Auth: &hub.Authentication{Type: hub.AuthCA}}, hub.Authentication{Type: hub.AuthCA}, false, nil},
		{"edge", hub.Device{Capabilities: &hub.Capabilities{IoTEdge: true}}, hub.Authentication{Type: hub.AuthSAS}, true, nil},
		{"short key", hub.Device{Auth: &hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: "c2hvcnQ="}}}, hub.Authentication{}, false, hub.ErrBadRequest},
		{"self-signed without thumbprint", hub.Device{Auth: &hub.Authentication{Type: hub.AuthSelfSigned}}, hub.Authentication{}, false, hub.ErrBadRequest},
		{"bad thumbprint", hub.Device{Auth: &hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: &hub.X509Thumbprint{PrimaryThumbprint: "xyz"}}}, hub.Authentication{}, false, hub.ErrBadRequest},
		{"bad type", hub.Device{Auth: &hub.Authentication{Type: "tpm"}}, hub.Authentication{}, false, hub.ErrBadRequest},
		{"bad status", hub.Device{Status: "paused"}, hub.Authentication{}, false, hub.ErrBadRequest},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.dev.DeviceID = "auth-" + string(rune('a'+i))
			got, err := c.CreateOrUpdateDevice(t.Context(), tt.dev)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.Type == hub.AuthSAS && tt.want.SymmetricKey == nil {
				tt.want.SymmetricKey = got.Auth.SymmetricKey // generated
			}
			if !reflect.DeepEqual(*got.Auth, tt.want) {
				t.Errorf("auth = %+v, want %+v", *got.Auth, tt.want)
			}
			if got.Capabilities == nil || got.Capabilities.IoTEdge != tt.edge {
				t.Errorf("capabilities = %+v, want iotEdge %v", got.Capabilities, tt.edge)
			}
		})
	}
}

func TestTwin(t *testing.T) {
	e := startSim(t)
	c := e.client(t, e.conn)
	ctx := t.Context()
	if _, err := c.GetTwin(ctx, "nobody"); !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("twin of missing device: err = %v, want ErrNotFound", err)
	}
	if _, err := c.CreateOrUpdateDevice(ctx, hub.Device{DeviceID: "tw"}); err != nil {
		t.Fatal(err)
	}
	t0, err := c.GetTwin(ctx, "tw")
	if err != nil {
		t.Fatal(err)
	}
	patch := hub.Twin{ETag: t0.ETag, Tags: map[string]any{"site": "a", "floor": map[string]any{"n": 1.0, "x": "y"}},
		Properties: hub.TwinProperties{Desired: map[string]any{"rate": 5.0}}}
	t1, err := c.UpdateTwin(ctx, "tw", patch)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if t1.Version <= t0.Version || t1.ETag == t0.ETag || t1.Properties.Desired["rate"] != 5.0 || t1.Tags["site"] != "a" {
		t.Fatalf("update: got %+v", t1)
	}
	if v0, v1 := t0.Properties.Desired["$version"], t1.Properties.Desired["$version"]; v1.(float64) != v0.(float64)+1 {
		t.Errorf("desired $version %v -> %v, want +1", v0, v1)
	}
	if _, err := c.UpdateTwin(ctx, "tw", patch); !errors.Is(err, hub.ErrPreconditionFailed) {
		t.Errorf("stale etag: err = %v, want ErrPreconditionFailed", err)
	}
	// Merge: nil deletes, nested objects merge.
	t2, err := c.UpdateTwin(ctx, "tw", hub.Twin{Tags: map[string]any{"site": nil, "floor": map[string]any{"x": nil, "z": true}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"floor": map[string]any{"n": 1.0, "z": true}}; !reflect.DeepEqual(t2.Tags, want) {
		t.Errorf("merged tags = %v, want %v", t2.Tags, want)
	}
	t3, err := c.ReplaceTwin(ctx, "tw", hub.Twin{Tags: map[string]any{"only": "this"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]any{"only": "this"}; !reflect.DeepEqual(t3.Tags, want) || t3.Properties.Desired["rate"] != nil {
		t.Errorf("replaced twin = tags %v desired %v", t3.Tags, t3.Properties.Desired)
	}
	if _, err := c.UpdateTwin(ctx, "tw", hub.Twin{Tags: map[string]any{"a.b": 1}}); !errors.Is(err, hub.ErrBadRequest) {
		t.Errorf("dotted key: err = %v, want ErrBadRequest", err)
	}
	simTwin, _ := e.sim.Twin(hubHost, "tw")
	if simTwin.ETag != t3.ETag {
		t.Errorf("sim twin etag %q, client saw %q", simTwin.ETag, t3.ETag)
	}
}

func TestListDevices(t *testing.T) {
	e := startSim(t)
	c := e.client(t, e.conn)
	for _, id := range []string{"c", "a", "b"} {
		if _, err := c.CreateOrUpdateDevice(t.Context(), hub.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.ListDevices(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].DeviceID != "a" || got[1].DeviceID != "b" {
		t.Errorf("list top 2 = %+v, want a, b", got)
	}
}

func TestCheck(t *testing.T) {
	e := startSim(t)
	other := hubsim.NewHubConfig(hubHost)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	wrongPolicy := strings.Replace(e.conn, "SharedAccessKeyName=iothubowner", "SharedAccessKeyName=registryRead", 1)
	unknownHub := strings.Replace(e.conn, "HostName="+hubHost, "HostName=nohub.localhost", 1)
	tests := []struct {
		name  string
		conn  string
		fault hubsim.Fault
		want  error
	}{
		{"ok", e.conn, hubsim.FaultNone, nil},
		{"wrong key", other.ConnectionStringPort(e.srv.Port()), hubsim.FaultNone, hub.ErrUnauthorized},
		{"wrong policy", wrongPolicy, hubsim.FaultNone, hub.ErrUnauthorized},
		{"unknown hub (no certificate for it)", unknownHub, hubsim.FaultNone, hub.ErrUnavailable},
		{"down", e.conn, hubsim.FaultUnavailable, hub.ErrUnavailable},
		{"reset", e.conn, hubsim.FaultReset, hub.ErrUnavailable},
		{"nothing listening", e.cfg.ConnectionStringPort(deadPort), hubsim.FaultNone, hub.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := e.sim.SetFault(hubHost, tt.fault); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.sim.SetFault(hubHost, hubsim.FaultNone) })
			err := e.client(t, tt.conn).Check(t.Context())
			if (tt.want == nil && err != nil) || !errors.Is(err, tt.want) {
				t.Errorf("Check() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and never answer
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	cfg := hubsim.NewHubConfig("slow.localhost")
	c, err := hub.New(cfg.ConnectionStringPort(ln.Addr().(*net.TCPAddr).Port), hub.WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Check(context.Background())
	if !errors.Is(err, hub.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check() = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Check took %v, want about 200ms", took)
	}
}

func TestNewRejects(t *testing.T) {
	for _, s := range []string{"", "HostName=h", "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0"} {
		if _, err := hub.New(s); err == nil {
			t.Errorf("New(%q) succeeded, want error", s)
		}
	}
	c, err := hub.New("HostName=h.localhost;SharedAccessKey=c2VjcmV0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDevice(t.Context(), ""); !errors.Is(err, hub.ErrInvalidArgument) {
		t.Errorf("GetDevice(\"\") err = %v, want ErrInvalidArgument", err)
	}
}
