package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/pki"
	"github.com/spf13/cobra"
)

// parseServeFlags binds a fresh default configuration to the serve flags,
// parses args and resolves the config file as `opendps serve` does.
func parseServeFlags(t *testing.T, args ...string) (node.Config, error) {
	t.Helper()
	cfg := node.DefaultConfig()
	cmd := &cobra.Command{Use: "serve"}
	configFile := nodeFlags(cmd, &cfg)
	if err := cmd.ParseFlags(args); err != nil {
		return cfg, err
	}
	err := resolveNodeConfig(cmd, &cfg, *configFile)
	return cfg, err
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeFlags(t *testing.T) {
	t.Setenv("OPENDPS_OPERATOR_TOKEN", "")
	file := writeConfig(t, `{
		"name": "from-file",
		"region": "northeurope",
		"dataDir": "/srv/file",
		"serviceDomain": "dps.example.com",
		"hostNames": ["file.example.com"],
		"logLevel": "debug"
	}`)
	tests := []struct {
		name   string
		args   []string
		mutate func(c *node.Config) // applied to DefaultConfig to get the want
	}{
		{"defaults", nil, func(c *node.Config) {}},
		{"flags", []string{
			"--name", "n2", "--region", "northeurope", "--zone", "3", "--data-dir", "/d",
			"--ca-dir", "/ca", "--device-addr", ":1", "--service-addr", ":2", "--control-addr", ":3",
			"--console-addr", ":4", "--etcd-client-addr", "127.0.0.1:5", "--etcd-peer-addr", "127.0.0.1:6",
			"--etcd-initial-cluster", "n2=http://127.0.0.1:6", "--service-domain", "d.example",
			"--public-device-host", "global.example:443", "--tls-cert", "c.pem", "--tls-key", "k.pem",
			"--operator-token", "tok", "--regions-file", "r.json", "--log-level", "warn",
			"--host-name", "a.example", "--host-name", "b.example",
			"--etcd-endpoints", "http://e1:2379,http://e2:2379", "--hosted-regions", "*",
		}, func(c *node.Config) {
			c.Name, c.Region, c.Zone, c.DataDir, c.CADir = "n2", "northeurope", "3", "/d", "/ca"
			c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = ":1", ":2", ":3", ":4"
			c.EtcdClientAddr, c.EtcdPeerAddr, c.EtcdInitialCluster = "127.0.0.1:5", "127.0.0.1:6", "n2=http://127.0.0.1:6"
			c.ServiceDomain, c.PublicDeviceHost = "d.example", "global.example:443"
			c.TLSCertFile, c.TLSKeyFile, c.OperatorToken = "c.pem", "k.pem", "tok"
			c.RegionsFile, c.LogLevel = "r.json", "warn"
			c.HostNames = []string{"a.example", "b.example"}
			c.EtcdEndpoints = []string{"http://e1:2379", "http://e2:2379"}
			c.HostedRegions = []string{"*"}
		}},
		{"config file", []string{"--config", file}, func(c *node.Config) {
			c.Name, c.Region, c.DataDir, c.ServiceDomain, c.LogLevel = "from-file", "northeurope", "/srv/file", "dps.example.com", "debug"
			c.HostNames = []string{"file.example.com"}
		}},
		{"flags win over the file", []string{"--name", "from-flag", "--config", file, "--log-level", "error"}, func(c *node.Config) {
			c.Name, c.Region, c.DataDir, c.ServiceDomain, c.LogLevel = "from-flag", "northeurope", "/srv/file", "dps.example.com", "error"
			c.HostNames = []string{"file.example.com"}
		}},
		{"flag equal to its default still wins", []string{"--config", file, "--region", "westeurope"}, func(c *node.Config) {
			c.Name, c.Region, c.DataDir, c.ServiceDomain, c.LogLevel = "from-file", "westeurope", "/srv/file", "dps.example.com", "debug"
			c.HostNames = []string{"file.example.com"}
		}},
		{"slice flag wins over the file", []string{"--config", file, "--host-name", "x.example", "--host-name", "y.example"}, func(c *node.Config) {
			c.Name, c.Region, c.DataDir, c.ServiceDomain, c.LogLevel = "from-file", "northeurope", "/srv/file", "dps.example.com", "debug"
			c.HostNames = []string{"x.example", "y.example"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServeFlags(t, tt.args...)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.args, err)
			}
			want := node.DefaultConfig()
			tt.mutate(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestServeFlagsOperatorTokenFromEnv(t *testing.T) {
	t.Setenv("OPENDPS_OPERATOR_TOKEN", "env-token")
	got, err := parseServeFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	if got.OperatorToken != "env-token" {
		t.Errorf("OperatorToken = %q, want %q from OPENDPS_OPERATOR_TOKEN", got.OperatorToken, "env-token")
	}
	got, err = parseServeFlags(t, "--operator-token", "flag-token")
	if err != nil {
		t.Fatal(err)
	}
	if got.OperatorToken != "flag-token" {
		t.Errorf("OperatorToken = %q, want the flag's %q over the environment", got.OperatorToken, "flag-token")
	}
}

func TestServeFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing config file", []string{"--config", filepath.Join(t.TempDir(), "none.json")}, "none.json"},
		{"unknown field in config", []string{"--config", writeConfig(t, `{"devicePort":1}`)}, "devicePort"},
		{"unknown flag", []string{"--device-port", "1"}, "device-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServeFlags(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestServeCommandRefuses runs `opendps serve` with arguments that must
// fail before anything starts.
func TestServeCommandRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"positional argument", []string{"serve", "extra"}, "extra"},
		{"invalid config", []string{"serve", "--data-dir", t.TempDir(), "--log-level", "loud"}, "logLevel"},
		{"bad config file", []string{"serve", "--config", writeConfig(t, `{"name":`)}, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			root := newRoot()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(tt.args)
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("opendps %q: err = %v, want one mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}

// mainHelperEnv switches the test binary into running main() with the
// arguments after "--" (the re-exec trick of os/exec's tests).
const mainHelperEnv = "OPENDPS_TEST_MAIN"

func TestMainHelperProcess(t *testing.T) {
	if os.Getenv(mainHelperEnv) != "1" {
		t.Skip("runs only as the subprocess of TestServeProcess")
	}
	i := slices.Index(os.Args, "--")
	if i < 0 {
		t.Fatal("no -- in os.Args")
	}
	os.Args = append([]string{"opendps"}, os.Args[i+1:]...)
	main()
}

// TestServeProcess runs `opendps serve` as a real process, waits for
// /healthz and checks that SIGTERM shuts it down cleanly (exit status 0).
func TestServeProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	if testing.Short() {
		t.Skip("starts a server process")
	}
	free := func() string {
		a, err := netutil.FreeLoopbackAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dataDir := t.TempDir()
	control := free()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainHelperProcess$", "-test.count=1", "--",
		"serve", "--data-dir", dataDir, "--log-level", "warn",
		"--device-addr", "127.0.0.1:0", "--service-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0",
		"--control-addr", control, "--etcd-client-addr", free(), "--etcd-peer-addr", free())
	cmd.Env = append(os.Environ(), mainHelperEnv+"=1", "OPENDPS_OPERATOR_TOKEN=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	if err := waitHealthy(filepath.Join(dataDir, "tls", pki.CAFile), "https://"+control+"/healthz", exited, 60*time.Second); err != nil {
		if errors.Is(err, errExited) {
			t.Fatalf("%v; output:\n%s", err, stderr.String())
		}
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: %v, want exit status 0; output:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("still running 15s after SIGTERM; output:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("output does not report the shutdown:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "operator-token")); err != nil {
		t.Errorf("operator token not created: %v", err)
	}
}

var errExited = errors.New("server process exited")

// waitHealthy polls until caFile exists and url answers 200 over TLS
// trusting it, the process exits, or timeout passes.
func waitHealthy(caFile, url string, exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var cli *http.Client
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return errors.Join(errExited, err)
		default:
		}
		if cli == nil {
			if b, err := os.ReadFile(caFile); err == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(b) {
					tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
					defer tr.CloseIdleConnections()
					cli = &http.Client{Transport: tr, Timeout: 2 * time.Second}
				}
			}
		}
		if cli != nil {
			resp, err := cli.Get(url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = errors.New(resp.Status)
			}
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(errors.New("server not healthy in time"), last)
}
