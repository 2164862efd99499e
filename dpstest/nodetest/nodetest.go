// Package nodetest runs conformance tests written for node's built-in test
// runner (node --test) with the official Azure IoT Node.js SDKs, which are
// installed in test/node of this repository (npm ci there).
//
// A Go test starts its servers in-process, writes the CA PEM with WriteCA,
// and calls Run with the script and the environment the script reads:
//
//	nodetest.Run(t, "hubsim.test.js", map[string]string{
//		"NODE_EXTRA_CA_CERTS":   nodetest.WriteCA(t, ca.CertPEM),
//		"HUB_CONNECTION_STRING": connStr,
//	})
//
// Scripts run with test/node as working directory and lib/shim.js
// preloaded, so SDK clients given "name.localhost:port" host names reach
// 127.0.0.1:port with the right SNI. When node or test/node/node_modules is
// missing the test is skipped, or fails if the CI environment variable is
// set.
package nodetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout bounds one Run when the test has no earlier deadline.
const DefaultTimeout = 3 * time.Minute

// Shim is the preloaded module, relative to Dir.
const Shim = "./lib/shim.js"

// Dir returns the absolute path of test/node, skipping (or, under CI,
// failing) the test when node or the installed SDKs are missing.
func Dir(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		unavailable(t, "cannot find the repository root: %v", err)
	}
	dir := filepath.Join(root, "test", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		unavailable(t, "%s/node_modules is missing (run npm ci there): %v", dir, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		unavailable(t, "node is not installed: %v", err)
	}
	return dir
}

// Run runs `node --require ./lib/shim.js --test script` in Dir with the
// process environment plus env (env wins), and fails the test with node's
// output on a non-zero exit. The output is logged either way (go test -v).
func Run(t testing.TB, script string, env map[string]string) {
	t.Helper()
	dir := Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--require", Shim, "--test", "--test-reporter=spec", script)
	cmd.Dir = dir
	cmd.Env = mergeEnv(os.Environ(), env)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node %s: timed out after %v\n%s", script, time.Since(start).Round(time.Second), out)
	}
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	t.Logf("node %s passed in %v:\n%s", script, time.Since(start).Round(time.Millisecond), out)
}

// WriteCA writes a CA PEM to a file in t.TempDir, for NODE_EXTRA_CA_CERTS.
func WriteCA(t testing.TB, pem []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// timeout leaves a margin before the test binary's own deadline.
func timeout(t testing.TB) time.Duration {
	d := DefaultTimeout
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := tt.Deadline(); ok {
			if left := time.Until(dl) - 10*time.Second; left < d {
				d = max(left, time.Second)
			}
		}
	}
	return d
}

// mergeEnv returns base with env's keys set, sorted.
func mergeEnv(base []string, env map[string]string) []string {
	m := map[string]string{}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	for k, v := range env {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("nodetest: "+format, args...)
	}
	t.Skipf("nodetest: "+format, args...)
}
