package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := netutil.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testConfig is a single-node configuration in dir: listeners on random
// loopback ports, the embedded member on free ports, quiet logs.
func testConfig(t *testing.T, dir string) Config {
	t.Helper()
	c := DefaultConfig()
	c.Name = "n1"
	c.DataDir = dir
	c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.MQTTAddr = "127.0.0.1:0"
	c.EtcdClientAddr, c.EtcdPeerAddr = freeAddr(t), freeAddr(t)
	c.LogLevel = "error"
	return c
}

// startNode starts a node, waits until it is ready and closes it at the
// end of the test.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	select {
	case <-n.ReadyNotify():
	case err := <-n.Err():
		t.Fatalf("node failed: %v", err)
	case <-ctx.Done():
		t.Fatal("ReadyNotify not closed")
	}
	return n
}

func httpsClient(t *testing.T, c *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: c, DialContext: netutil.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get fetches url and returns the response with its body read.
func get(t *testing.T, cli *http.Client, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cli.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

// checkFree fails the test if something still listens on addr.
func checkFree(t *testing.T, what, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Errorf("%s %s is still in use: %v", what, addr, err)
		return
	}
	ln.Close()
}

func TestNodeServes(t *testing.T) {
	t.Parallel()
	n := startNode(t, testConfig(t, t.TempDir()))
	if n.CA() == nil {
		t.Fatal("CA() = nil with no operator certificate")
	}
	cli := httpsClient(t, n.CA().ClientTLS())
	control := "https://" + n.Addr(ListenerControl)

	tests := []struct {
		name, url, token string
		wantStatus       int
		wantBody         string // substring
	}{
		{"healthz", control + "/healthz", "", 200, "ok"},
		{"readyz", control + "/readyz", "", 200, "ready"},
		{"metrics", control + "/metrics", "", 200, "go_goroutines"},
		{"control API with token", control + "/opendps/regions", n.OperatorToken(), 200, "westeurope"},
		{"control API without token", control + "/opendps/regions", "", 401, ""},
		{"control API with wrong token", control + "/opendps/regions", "x" + n.OperatorToken(), 401, ""},
		{"control by localhost name", "https://" + strings.Replace(n.Addr(ListenerControl), "127.0.0.1", "localhost", 1) + "/healthz", "", 200, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, cli, tt.url, tt.token)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantBody)
			}
		})
	}

	t.Run("unknown path on "+ListenerDevice, func(t *testing.T) {
		resp, body := get(t, cli, "https://"+n.Addr(ListenerDevice)+"/no/such/route", "")
		checkDPS404(t, resp, body)
	})
	t.Run("console without a session", func(t *testing.T) { // internal/console; the client follows the redirect
		resp, body := get(t, cli, "https://"+n.Addr(ListenerConsole)+"/instances", "")
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/signin" || !strings.Contains(body, `id="signin-operator"`) {
			t.Errorf("GET /instances = %d at %s, want the sign-in page", resp.StatusCode, resp.Request.URL)
		}
	})

	t.Run("plain HTTP refused", func(t *testing.T) {
		plain := &http.Client{Timeout: 5 * time.Second}
		resp, err := plain.Get("http://" + n.Addr(ListenerControl) + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Error("control listener answered plain HTTP with 200")
			}
		}
	})

	t.Run("untrusted client", func(t *testing.T) {
		other, err := pki.NewCA("other")
		if err != nil {
			t.Fatal(err)
		}
		_, err = httpsClient(t, other.ClientTLS()).Get(control + "/healthz")
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) {
			t.Errorf("GET with another CA: err = %v, want x509.UnknownAuthorityError", err)
		}
	})
}

func checkDPS404(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	if got, want := resp.StatusCode, 404; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/json; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var b struct {
		ErrorCode    int    `json:"errorCode"`
		TrackingID   string `json:"trackingId"`
		Message      string `json:"message"`
		TimestampUTC string `json:"timestampUtc"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if b.ErrorCode/1000 != 404 || b.TrackingID == "" || b.Message == "" || b.TimestampUTC == "" {
		t.Errorf("body %q is not a DPS 404 error", body)
	}
	if got, want := resp.Header.Get("x-ms-error-code"), strconv.Itoa(b.ErrorCode); got != want {
		t.Errorf("x-ms-error-code = %q, want %q", got, want)
	}
}

func TestNodeMintsInstanceCertificate(t *testing.T) {
	t.Parallel()
	n := startNode(t, testConfig(t, t.TempDir()))
	_, port, _ := net.SplitHostPort(n.Addr(ListenerService))
	tests := []struct {
		host    string
		wantDNS string
	}{
		{"myinst.localhost", "myinst.localhost"},
		{"localhost", "localhost"},
		{"a.b.localhost", "localhost"}, // not an instance host: the default certificate
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c := n.CA().ClientTLS()
			c.ServerName = tt.host
			c.InsecureSkipVerify = tt.wantDNS != tt.host // the default cert does not cover a.b.localhost
			conn, err := tls.Dial("tcp", "127.0.0.1:"+port, c)
			if err != nil {
				t.Fatalf("TLS dial %s: %v", tt.host, err)
			}
			defer conn.Close()
			leaf := conn.ConnectionState().PeerCertificates[0]
			if got := leaf.DNSNames; len(got) == 0 || got[0] != tt.wantDNS {
				t.Errorf("served DNSNames = %q, want %q first", got, tt.wantDNS)
			}
			if err := leaf.CheckSignatureFrom(n.CA().Cert); err != nil {
				t.Errorf("served certificate not signed by the node CA: %v", err)
			}
		})
	}
}

func TestNodeCloseIdempotentAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	n := startNode(t, cfg)
	v, err := n.Instances().Create(ctx, instance.Spec{Name: "inst-a", Location: "westeurope"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	scope, token, caCert := v.Instance.IDScope, n.OperatorToken(), n.CA().Cert
	if scope == "" || token == "" {
		t.Fatalf("IDScope %q, token %q: want both set", scope, token)
	}
	tokenFile := filepath.Join(cfg.DataDir, "operator-token")
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("operator token file: %v, err %v; want mode 0600", fi, err)
	}
	oldClient := httpsClient(t, n.CA().ClientTLS())
	controlAddr := n.Addr(ListenerControl)

	done := make(chan error, 2)
	go func() { done <- n.Close() }()
	go func() { done <- n.Close() }()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Close() = %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("concurrent Close did not return")
		}
	}
	if err := n.Close(); err != nil {
		t.Errorf("third Close() = %v, want nil", err)
	}
	checkFree(t, "control listener", controlAddr)
	checkFree(t, "etcd client", cfg.EtcdClientAddr)
	checkFree(t, "etcd peer", cfg.EtcdPeerAddr)

	n2 := startNode(t, cfg)
	if got := n2.OperatorToken(); got != token {
		t.Errorf("token after restart = %q, want %q", got, token)
	}
	if !n2.CA().Cert.Equal(caCert) {
		t.Error("CA after restart is a different certificate")
	}
	got, err := n2.Instances().Get(ctx, "inst-a")
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if got.Instance.IDScope != scope {
		t.Errorf("IDScope after restart = %q, want %q", got.Instance.IDScope, scope)
	}
	// A client configured before the restart still trusts the node and its
	// token still works.
	resp, body := get(t, oldClient, "https://"+n2.Addr(ListenerControl)+"/opendps/regions", token)
	if resp.StatusCode != 200 {
		t.Errorf("old client, old token: status %d, body %q; want 200", resp.StatusCode, body)
	}
}

func TestNodeOperatorTokenFromConfig(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, t.TempDir())
	cfg.OperatorToken = "configured-token"
	n := startNode(t, cfg)
	if got, want := n.OperatorToken(), "configured-token"; got != want {
		t.Errorf("OperatorToken() = %q, want %q", got, want)
	}
	resp, _ := get(t, httpsClient(t, n.CA().ClientTLS()), "https://"+n.Addr(ListenerControl)+"/opendps/regions", "configured-token")
	if resp.StatusCode != 200 {
		t.Errorf("status with the configured token = %d, want 200", resp.StatusCode)
	}
}

func TestNodeExternalEtcd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clientAddr := freeAddr(t)
	ext, err := store.Open(ctx, store.Config{DataDir: t.TempDir(), Name: "ext", Region: "westeurope",
		ClientURL: "http://" + clientAddr, PeerURL: "http://" + freeAddr(t)})
	if err != nil {
		t.Fatalf("external etcd: %v", err)
	}
	t.Cleanup(func() { ext.Close() })

	cfg := testConfig(t, t.TempDir())
	cfg.EtcdEndpoints = []string{"http://" + clientAddr}
	cfg.EtcdClientAddr, cfg.EtcdPeerAddr = "", ""
	n := startNode(t, cfg)
	if n.Store().Etcd() != nil {
		t.Error("node started an embedded member with EtcdEndpoints set")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "etcd")); !os.IsNotExist(err) {
		t.Errorf("DataDir/etcd exists (stat err %v): the node wrote a member locally", err)
	}
	v, err := n.Instances().Create(ctx, instance.Spec{Name: "inst-a", Location: "westeurope"})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	resp, body := get(t, httpsClient(t, n.CA().ClientTLS()), "https://"+n.Addr(ListenerControl)+"/readyz", "")
	if resp.StatusCode != 200 {
		t.Errorf("readyz = %d %q, want 200", resp.StatusCode, body)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientAddr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	readDir := func() string {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := cli.Get(rctx, store.DirKey("inst-a"))
		if err != nil {
			t.Fatalf("get %s from the external etcd: %v", store.DirKey("inst-a"), err)
		}
		if len(r.Kvs) != 1 {
			t.Fatalf("external etcd holds %d values at %s, want 1", len(r.Kvs), store.DirKey("inst-a"))
		}
		return string(r.Kvs[0].Value)
	}
	if got := readDir(); !strings.Contains(got, v.Instance.IDScope) {
		t.Errorf("directory entry %s does not name ID scope %q", got, v.Instance.IDScope)
	}
	// Closing the node leaves the external cluster running.
	n.Close()
	readDir()
}

func TestNodeOperatorCertificate(t *testing.T) {
	t.Parallel()
	ca, err := pki.NewCA("operator CA")
	if err != nil {
		t.Fatal(err)
	}
	issued, err := ca.Issue([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := testConfig(t, filepath.Join(dir, "data"))
	cfg.TLSCertFile, cfg.TLSKeyFile = writeKeyPair(t, dir, issued)
	n := startNode(t, cfg)
	if n.CA() != nil {
		t.Error("CA() != nil with an operator certificate")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "tls", pki.CAFile)); !os.IsNotExist(err) {
		t.Errorf("a local CA was created despite the operator certificate (stat err %v)", err)
	}
	cli := httpsClient(t, ca.ClientTLS())
	for _, l := range []string{ListenerDevice, ListenerService, ListenerControl, ListenerConsole} {
		t.Run(l, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "https://"+n.Addr(l)+"/healthz", nil)
			resp, err := cli.Do(req)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			resp.Body.Close()
			if got := resp.TLS.PeerCertificates[0]; !got.Equal(issued.Leaf) {
				t.Errorf("served %q (serial %v), want the operator certificate", got.Subject, got.SerialNumber)
			}
		})
	}
}

func writeKeyPair(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	kd, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pki.EncodePEM("CERTIFICATE", der)...)
	}
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pki.EncodePEM("PRIVATE KEY", kd), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestStartFailureLeavesNothingRunning checks that a Start that fails,
// early or late, returns an error and frees every port it took.
func TestStartFailureLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		mutate  func(t *testing.T, c *Config)
		wantErr string
		wantIs  error
		timeout time.Duration // bounds Start (0: 60s)
	}{
		{"invalid config", func(t *testing.T, c *Config) { c.ServiceDomain = "" }, "serviceDomain", nil, 0},
		{"unknown region", func(t *testing.T, c *Config) { c.Region = "atlantis" }, "atlantis", regions.ErrUnknownRegion, 0},
		{"missing operator certificate", func(t *testing.T, c *Config) {
			c.TLSCertFile, c.TLSKeyFile = filepath.Join(c.DataDir, "none.pem"), filepath.Join(c.DataDir, "none-key.pem")
		}, "none.pem", nil, 0},
		{"half a CA", func(t *testing.T, c *Config) {
			os.MkdirAll(filepath.Join(c.DataDir, "tls"), 0o700)
			os.WriteFile(filepath.Join(c.DataDir, "tls", pki.CAFile), []byte("x"), 0o600)
		}, pki.CAKeyFile, nil, 0},
		{"console port busy", func(t *testing.T, c *Config) { c.ConsoleAddr = busy.Addr().String() }, "console", nil, 0},
		{"external etcd unreachable", func(t *testing.T, c *Config) {
			c.EtcdEndpoints = []string{"http://" + freeAddr(t)}
		}, "etcd", nil, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			cfg.DeviceAddr, cfg.ServiceAddr = freeAddr(t), freeAddr(t)
			tt.mutate(t, &cfg)
			timeout := cmp.Or(tt.timeout, 60*time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			n, err := startRecover(ctx, cfg)
			if d := time.Since(start); d > timeout+5*time.Second {
				t.Errorf("Start took %v to fail, ignoring its %v context", d, timeout)
			}
			if err == nil {
				n.Close()
				t.Fatal("Start succeeded, want an error")
			}
			if n != nil {
				t.Errorf("Start returned a node with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start error %q does not mention %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Start error %v is not %v", err, tt.wantIs)
			}
			checkFree(t, "device listener", cfg.DeviceAddr)
			checkFree(t, "service listener", cfg.ServiceAddr)
			checkFree(t, "etcd client", cfg.EtcdClientAddr)
			checkFree(t, "etcd peer", cfg.EtcdPeerAddr)
		})
	}
}

// startRecover is Start, with a panic turned into an error so that one
// broken failure path fails its test instead of the whole package.
func startRecover(ctx context.Context, cfg Config) (n *Node, err error) {
	defer func() {
		if p := recover(); p != nil {
			n, err = nil, fmt.Errorf("Start panicked: %v", p)
		}
	}()
	return Start(ctx, cfg)
}
