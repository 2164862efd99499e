package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// BinaryEnv names an environment variable holding a prebuilt opendps
// binary; when set, Binary uses it instead of building one.
const BinaryEnv = "OPENDPS_BINARY"

// build is the binary built once per test process.
var build struct {
	once sync.Once
	dir  string // temporary directory holding the binary; removed by Main
	path string
	err  error
}

// Binary returns the path of an opendps binary built from this module
// (`go build ./cmd/opendps`) the first time it is called in the test
// process, or the one named by $OPENDPS_BINARY. A build failure fails t.
// Safe for concurrent use.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	build.once.Do(func() { build.path, build.err = buildBinary() })
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

func buildBinary() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("cluster: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("cluster: not inside the opendps module")
	}
	gcStaleBuilds()
	dir, err := os.MkdirTemp("", fmt.Sprintf("opendps-cluster-bin-%d-", os.Getpid()))
	if err != nil {
		return "", err
	}
	build.dir = dir
	path := filepath.Join(dir, "opendps")
	cmd := exec.Command("go", "build", "-o", path, "./cmd/opendps")
	cmd.Dir = filepath.Dir(gomod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cluster: go build ./cmd/opendps: %v\n%s", err, b)
	}
	return path, nil
}

// gcStaleBuilds removes binaries built by test processes that were
// killed before Main could remove them.
func gcStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "opendps-cluster-bin-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "opendps-cluster-bin-%d-", &pid); err == nil && pid != os.Getpid() && !processAlive(pid) {
			os.RemoveAll(d)
		}
	}
}

// serveFlags returns the flags `opendps serve` accepts, so the harness
// can pass optional ones (such as --mqtt-addr) only to binaries that know
// them.
func serveFlags(t testing.TB, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("cluster: %s serve --help: %v\n%s", bin, err, out)
	}
	flags := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	return flags
}

var flagRE = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// Main runs the tests of a package that uses this harness and removes the
// binary built for them. Call it from TestMain:
//
//	func TestMain(m *testing.M) { cluster.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}
