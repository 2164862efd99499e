package deviceapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/opendps/opendps/"

// forbiddenPrefixes are the packages the device front ends must not link
// (STYLE §5): the control plane, the service API, instance management
// and the CLI. Console packages are matched by name in forbidden.
var forbiddenPrefixes = []string{
	module + "internal/controlapi",
	module + "internal/serviceapi",
	module + "internal/instance",
	module + "cmd/",
}

// forbidden reports whether a package under internal/deviceapi may not
// depend on path.
func forbidden(path string) bool {
	for _, p := range forbiddenPrefixes {
		if path == strings.TrimSuffix(p, "/") || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	if !strings.HasPrefix(path, module) {
		return false
	}
	for _, seg := range strings.Split(strings.TrimPrefix(path, module), "/") {
		if strings.Contains(seg, "console") {
			return true
		}
	}
	return false
}

func TestForbidden(t *testing.T) {
	for path, want := range map[string]bool{
		module + "internal/controlapi":          true,
		module + "internal/serviceapi/sub":      true,
		module + "internal/instance":            true,
		module + "internal/instancex":           false,
		module + "cmd/opendps":                  true,
		module + "internal/webconsole":          true,
		module + "internal/console/assets":      true,
		module + "internal/engine":              false,
		module + "internal/deviceapi/httpfront": false,
		module + "internal/deviceapi/mqttfront": false,
		module + "internal/deviceapi/devreq":    false,
		"example.com/console":                   false,
		"net/http":                              false,
	} {
		if got := forbidden(path); got != want {
			t.Errorf("forbidden(%q) = %v, want %v", path, got, want)
		}
	}
}

// pkg is the part of `go list -json` output the test reads.
type pkg struct {
	ImportPath string
	Imports    []string
}

// listDeps runs `go list -deps` over internal/deviceapi/... (non-test
// imports only: tests may import anything).
func listDeps(t *testing.T) map[string]pkg {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found:", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(gobin, "list", "-e", "-deps", "-json=ImportPath,Imports", "./...")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

// frontEnds are the device API packages the test must find, so that a
// renamed package cannot escape it.
var frontEnds = []string{
	"internal/deviceapi",
	"internal/deviceapi/devreq",
	"internal/deviceapi/httpfront",
	"internal/deviceapi/mqttfront",
}

// TestDependencies asserts that nothing under internal/deviceapi imports,
// directly or not, a forbidden package, and names the import chain when
// something does.
func TestDependencies(t *testing.T) {
	pkgs := listDeps(t)
	var roots []string
	for path := range pkgs {
		if strings.HasPrefix(path, module+"internal/deviceapi") {
			roots = append(roots, path)
		}
	}
	for _, want := range frontEnds {
		if pkgs[module+want].ImportPath == "" {
			t.Fatalf("go list found device API packages %v, want %v among them", roots, frontEnds)
		}
	}
	for _, root := range roots {
		parent := map[string]string{root: ""}
		queue := []string{root}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			if forbidden(cur) {
				t.Errorf("%s depends on %s: %s", root, cur, chain(parent, cur))
				continue
			}
			for _, imp := range pkgs[cur].Imports {
				if _, seen := parent[imp]; !seen {
					parent[imp] = cur
					queue = append(queue, imp)
				}
			}
		}
	}
}

// chain renders the import path from a root to p.
func chain(parent map[string]string, p string) string {
	var c []string
	for ; p != ""; p = parent[p] {
		c = append([]string{strings.TrimPrefix(p, module)}, c...)
	}
	return strings.Join(c, " -> ")
}
