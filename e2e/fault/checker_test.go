package fault

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/history"
)

// The checkers must catch what they are for: these histories are made up,
// each with a known verdict.

func op(kind history.Kind, key, in, out string, outcome history.Outcome, call, ret int) Op {
	return Op{Kind: kind, Key: key, In: in, Out: out, Outcome: outcome,
		Call: time.Duration(call) * time.Millisecond, Return: time.Duration(ret) * time.Millisecond}
}

// TestLinearizabilityChecker: the suite's check (the model of
// dpstest/history, tested there) writes its visualization of an illegal
// history.
func TestLinearizabilityChecker(t *testing.T) {
	const e = "e-1"
	dir := t.TempDir()
	res, err := checkLinearizable([]Op{
		op(history.EnrollmentPut, e, "v1", "v1", history.OK, 0, 10),
		op(history.EnrollmentPut, e, "v2", "v2", history.OK, 20, 30),
		op(history.EnrollmentGet, e, "", "v1", history.OK, 40, 50),
	}, func() string { return dir }, "h", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Illegal, []string{e}) {
		t.Fatalf("illegal = %q, want [%s]", res.Illegal, e)
	}
	if b, err := os.ReadFile(res.Visualization); err != nil || !strings.Contains(string(b), "<html") {
		t.Errorf("visualization %s: %v", res.Visualization, err)
	}
}

func TestSetCheck(t *testing.T) {
	ops := []Op{
		op(history.Register, "d-1", "", "hub1|d-1", history.OK, 0, 10),
		op(history.Register, "d-2", "", history.AnyValue, history.Unknown, 0, 10),
		op(history.EnrollmentPut, "e-1", "v1", "v1", history.OK, 0, 10),
		op(history.EnrollmentPut, "e-1", "v2", "v2", history.OK, 20, 30),
		op(history.EnrollmentPut, "e-2", "v3", "v3", history.OK, 0, 10),
		op(history.EnrollmentPut, "e-2", "v4", "", history.Unknown, 20, 30),
	}
	name := func(i int) string { return []string{"node1", "node2"}[i] }
	good := memberState{registrations: map[string]string{"d-1": "hub1|d-1"}, enrollments: map[string]string{"e-1": "v2", "e-2": "v4"}}
	if lost, div := setCheck(ops, []memberState{good, good}, name); len(lost)+len(div) > 0 {
		t.Errorf("all present: lost %v, diverged %v", lost, div)
	}
	bad := memberState{registrations: map[string]string{}, enrollments: map[string]string{"e-1": "v1", "e-2": "v3"}}
	lost, div := setCheck(ops, []memberState{good, bad}, name)
	if len(lost) != 2 || !strings.Contains(lost[0], "e-1") || !strings.Contains(lost[1], "d-1") {
		t.Errorf("lost = %q, want the registration d-1 and put v2 of e-1 in node2", lost)
	}
	if len(div) != 3 {
		t.Errorf("diverged = %q, want 3 lines", div)
	}
}
