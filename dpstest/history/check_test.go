package history

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The checker must catch what it is for: these histories are made up,
// each with a known verdict.

func op(kind Kind, key, in, out string, outcome Outcome, call, ret int) Checked {
	return Checked{Kind: kind, Key: key, In: in, Out: out, Outcome: outcome,
		Call: int64(time.Duration(call) * time.Millisecond), Return: int64(time.Duration(ret) * time.Millisecond)}
}

func TestCheck(t *testing.T) {
	const e, d = "e-1", "d-1"
	for _, tc := range []struct {
		name    string
		ops     []Checked
		illegal bool
	}{
		{"sequential puts and reads", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentGet, e, "", "v1", OK, 20, 30),
			op(EnrollmentPut, e, "v2", "v2", OK, 40, 50),
			op(EnrollmentGet, e, "", "v2", OK, 60, 70),
		}, false},
		{"stale read after an acknowledged put", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "v2", OK, 20, 30),
			op(EnrollmentGet, e, "", "v1", OK, 40, 50),
		}, true},
		{"concurrent read may see either", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "v2", OK, 20, 60),
			op(EnrollmentGet, e, "", "v1", OK, 30, 40),
		}, false},
		{"acknowledged put lost at the end", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(FinalRead, e, "", Absent, OK, 100, 100),
		}, true},
		{"put answered with another value", []Checked{
			op(EnrollmentPut, e, "v1", "v9", OK, 0, 10),
		}, true},
		{"unknown put observed later", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(EnrollmentGet, e, "", "v1", OK, 40, 50),
			op(EnrollmentGet, e, "", "v2", OK, 60, 70),
			op(FinalRead, e, "", "v2", OK, 100, 100),
		}, false},
		{"unknown put observed, then undone", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(EnrollmentGet, e, "", "v2", OK, 40, 50),
			op(EnrollmentGet, e, "", "v1", OK, 60, 70),
		}, true},
		{"unknown put never observed", []Checked{
			op(EnrollmentPut, e, "v1", "v1", OK, 0, 10),
			op(EnrollmentPut, e, "v2", "", Unknown, 20, 30),
			op(FinalRead, e, "", "v1", OK, 100, 100),
		}, false},
		{"registration read before and after its ack", []Checked{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 10, 20),
			op(RegistrationGet, d, "", "hub1|d-1", OK, 60, 70),
		}, false},
		{"acknowledged registration not found", []Checked{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 60, 70),
		}, true},
		{"registration found on another hub", []Checked{
			op(Register, d, "", "hub1|d-1", OK, 0, 50),
			op(RegistrationGet, d, "", "hub2|d-1", OK, 60, 70),
		}, true},
		{"unknown registration seen, then gone", []Checked{
			op(Register, d, "", AnyValue, Unknown, 0, 50),
			op(RegistrationGet, d, "", "hub1|d-1", OK, 60, 70),
			op(FinalRead, d, "", Absent, OK, 100, 100),
		}, true},
		{"unknown registration that failed", []Checked{
			op(Register, d, "", AnyValue, Unknown, 0, 50),
			op(RegistrationGet, d, "", Absent, OK, 60, 70),
			op(FinalRead, d, "", "status:failed", OK, 100, 100),
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.ops, 10*time.Second)
			if got := len(res.Illegal) > 0; got != tc.illegal {
				t.Fatalf("illegal = %v, want %v", got, tc.illegal)
			}
			if tc.illegal {
				path := filepath.Join(t.TempDir(), "h.html")
				if err := res.Visualize(path); err != nil {
					t.Fatal(err)
				}
				if b, err := os.ReadFile(path); err != nil || !strings.Contains(string(b), "<html") {
					t.Errorf("visualization %s: %v", path, err)
				}
			}
		})
	}
}
