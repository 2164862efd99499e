package nodetest

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "C=x=y"}, map[string]string{"B": "3", "D": ""})
	want := []string{"A=1", "B=3", "C=x=y", "D="}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mergeEnv = %q, want %q", got, want)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "dpstest", "nodetest", "nodetest.go")); err != nil {
		t.Errorf("repoRoot() = %q, which does not hold this package: %v", root, err)
	}
}
