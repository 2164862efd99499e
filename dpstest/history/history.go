// Package history records what concurrent clients did to a DPS
// deployment and checks the record against a model of the DPS contract:
// every enrollment and every device registration is a read/write register
// keyed by its id (see Check). The fault suite (e2e/fault) and the
// disaster suite (e2e/dr) share it; each keeps its own operation type
// (what it records besides the checked fields, and on which clock) and
// converts it to Checked for the check.
package history

import (
	"errors"
	"math"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Kind is the kind of a recorded operation.
type Kind string

// Operation kinds. Writes are enrollment puts and registrations.
const (
	EnrollmentPut   Kind = "enrollment.put"   // service API PUT /enrollments/{id}, value in deviceId
	EnrollmentGet   Kind = "enrollment.get"   // service API GET /enrollments/{id}
	Register        Kind = "register"         // device API register, until assigned
	RegistrationGet Kind = "registration.get" // service API GET /registrations/{id}
	FinalRead       Kind = "final.read"       // a read of the store itself at the end
)

// Write reports whether operations of kind k write.
func (k Kind) Write() bool { return k == EnrollmentPut || k == Register }

// Outcome of an operation.
type Outcome int

const (
	// OK: the server acknowledged; the operation's output is what it
	// answered.
	OK Outcome = iota
	// Failed: definitely not applied (refused connection, 4xx, a refusal
	// before any work). Failed reads carry no information either.
	Failed
	// Unknown: may or may not have been applied (timeout, reset, 5xx, a
	// registration that ended "failed").
	Unknown
)

func (o Outcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

// Absent is the value of a key that does not exist; AnyValue is what an
// unknown registration may have written (an assignment or a failure).
const (
	Absent   = ""
	AnyValue = "?"
)

// Never is the return time (in Checked's nanoseconds) given to operations
// of unknown outcome: they may take effect at any point after their call.
const Never = math.MaxInt64 / 2

// Recorded is what a History needs of a suite's operation type O.
type Recorded[O any] interface {
	// WithID returns the operation with its ID set to id.
	WithID(id int) O
	// CalledBefore reports whether the operation was called before o.
	CalledBefore(o O) bool
}

// History collects operations from concurrent workers. The zero value is
// empty and ready; it may be used by any number of goroutines.
type History[O Recorded[O]] struct {
	mu  sync.Mutex
	ops []O // guarded by mu
}

// Add records a completed operation and returns it with its ID set (its
// position in the order of Adds).
func (h *History[O]) Add(op O) O {
	h.mu.Lock()
	defer h.mu.Unlock()
	op = op.WithID(len(h.ops))
	h.ops = append(h.ops, op)
	return op
}

// Ops returns a copy of the operations, sorted by call time.
func (h *History[O]) Ops() []O {
	h.mu.Lock()
	ops := append([]O(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].CalledBefore(ops[j]) })
	return ops
}

// RegistrationValue is a registration's value in the model: where the
// device was assigned ("hub|deviceId"), or the status of a registration
// that was not ("status:failed").
func RegistrationValue(status, hub, deviceID string) string {
	if status == model.OpStatusAssigned {
		return hub + "|" + deviceID
	}
	return "status:" + status
}

// QuorumRefusal starts the message of the 503 a node answers, before
// doing anything, while it cannot reach its region's quorum
// (internal/node quorumGate).
const QuorumRefusal = "This node cannot reach the quorum"

// Classify says whether a write that returned err may have been applied.
// Every 5xx other than the quorum refusal counts as unknown: the write may
// still commit (or, forwarded, may have committed in the other region
// before the answer was lost).
func Classify(err error) Outcome {
	var se *dpsclient.ServiceError
	if errors.As(err, &se) {
		if se.Status >= 500 && !strings.HasPrefix(se.Message, QuorumRefusal) {
			return Unknown
		}
		return Failed
	}
	var de *dpsclient.DeviceError
	if errors.As(err, &de) {
		if de.StatusCode >= 500 && !strings.HasPrefix(de.Message, QuorumRefusal) {
			return Unknown
		}
		return Failed
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return Failed
	}
	return Unknown
}
