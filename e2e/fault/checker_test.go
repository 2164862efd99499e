package fault

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The checkers must catch what they are for: these histories are made up,
// each with a known verdict.

func op(kind Kind, key, in, out string, outcome Outcome, call, ret int) Op {
	return Op{Kind: kind, Key: key, In: in, Out: out, Outcome: outcome,
		Call: time.Duration(call) * time.Millisecond, Return: time.Duration(ret) * time.Millisecond}
}

func TestLinearizabilityChecker(t *testing.T) {
	const e, d = "e-1", "d-1"
	for _, tc := range []struct {
		name    string
		ops     []Op
		illegal bool
	}{
		{"sequential puts and reads", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentGet, e, "", "v1", OK, 20, 30),
			op(EnrollmentPut, e, "v2", "v2", OK, 40, 50),
			op(EnrollmentGet, e, "", "v2", OK, 60, 70),
		}, false},
		{"stale read after an acknowledged put", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "v2", OK, 20, 30),
			op(EnrollmentGet, e, "", "v1", OK, 40, 50),
		}, true},
		{"concurrent read may see either", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "v2", OK, 20, 60),
			op(EnrollmentGet, e, "", "v1", OK, 30, 40),
		}, false},
		{"acknowledged put lost at the end", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(FinalRead, e, "", Absent, OK, 100, 100),
		}, true},
		{"put answered with another value", []Op{
			op(EnrollmentPut, e, "v1", "v9", OK, 0, 10),
		}, true},
		{"unknown put observed later", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(EnrollmentGet, e, "", "v1", OK, 40, 50),
			op(EnrollmentGet, e, "", "v2", OK, 60, 70),
			op(FinalRead, e, "", "v2", OK, 100, 100),
		}, false},
		{"unknown put observed, then undone", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(EnrollmentGet, e, "", "v2", OK, 40, 50),
			op(EnrollmentGet, e, "", "v1", OK, 60, 70),
		}, true},
		{"unknown put never observed", []Op{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(FinalRead, e, "", "v1", OK, 100, 100),
		}, false},
		{"registration read before and after its ack", []Op{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 10, 20),
			op(RegistrationGet, d, "", "hub1|d-1", OK, 60, 70),
		}, false},
		{"acknowledged registration not found", []Op{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 60, 70),
		}, true},
		{"registration found on another hub", []Op{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", "hub2|d-1", OK, 60, 70),
		}, true},
		{"unknown registration seen, then gone", []Op{
			op(Register, d, "", AnyValue, Unknown, 0, 50),
			op(RegistrationGet, d, "", "hub1|d-1", OK, 60, 70),
			op(FinalRead, d, "", Absent, OK, 100, 100),
		}, true},
		{"unknown registration that failed", []Op{
			op(Register, d, "", AnyValue, Unknown, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 60, 70),
			op(FinalRead, d, "", "status:failed", OK, 100, 100),
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := checkLinearizable(tc.ops, func() string { return dir }, "h", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(res.Illegal) > 0; got != tc.illegal {
				t.Fatalf("illegal = %v, want %v", got, tc.illegal)
			}
			if tc.illegal {
				if b, err := os.ReadFile(res.Visualization); err != nil || !strings.Contains(string(b), "<html") {
					t.Errorf("visualization %s: %v", res.Visualization, err)
				}
			}
		})
	}
}

func TestSetCheck(t *testing.T) {
	ops := []Op{
		op(Register, "d-1", "", "hub1|d-1", OK, 0, 10),
		op(Register, "d-2", "", AnyValue, Unknown, 0, 10),
		op(EnrollmentPut, "e-1", "v1", "v1", OK, 0, 10),
		op(EnrollmentPut, "e-1", "v2", "v2", OK, 20, 30),
		op(EnrollmentPut, "e-2", "v3", "v3", OK, 0, 10),
		op(EnrollmentPut, "e-2", "v4", "", Unknown, 20, 30),
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
