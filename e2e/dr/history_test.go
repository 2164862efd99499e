package dr

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

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
	FinalRead       Kind = "final.read"       // the new primary's etcd at the end
)

func (k Kind) write() bool { return k == EnrollmentPut || k == Register }

// Outcome of an operation.
type Outcome int

const (
	// OK: the server acknowledged; Out holds what it answered.
	OK Outcome = iota
	// Failed: definitely not applied (refused connection, 4xx, a refusal
	// before any work). Failed reads carry no information either.
	Failed
	// Unknown: may or may not have been applied (timeout, reset, 5xx).
	Unknown
)

func (o Outcome) String() string { return [...]string{"ok", "failed", "unknown"}[o] }

// Absent is the value of a key that does not exist; AnyValue is what an
// unknown registration may have written.
const (
	Absent   = ""
	AnyValue = "?"
)

// Op is one recorded operation. Call and Return are wall-clock times (the
// failover report's times are wall-clock times of the same machine).
type Op struct {
	ID      int
	Worker  int
	Load    string // the workload that issued it
	Kind    Kind
	Key     string // enrollment or device registration id
	Via     string // "frontdoor" or the region whose endpoint was called
	Proto   string // https or mqtt (registrations)
	In      string // value written
	Out     string // value read or registered
	Outcome Outcome
	Call    time.Time
	Return  time.Time
	Err     string
}

func (o Op) String() string {
	s := fmt.Sprintf("#%d %s/w%d %s %s via %s", o.ID, o.Load, o.Worker, o.Kind, o.Key, o.Via)
	if o.Proto != "" {
		s += "/" + o.Proto
	}
	if o.In != "" {
		s += " in=" + o.In
	}
	s += fmt.Sprintf(" -> %s out=%q [%s, %s]", o.Outcome, o.Out, o.Call.Format("15:04:05.000"), o.Return.Format("15:04:05.000"))
	if o.Err != "" {
		s += " err=" + o.Err
	}
	return s
}

// History collects operations from concurrent workers.
type History struct {
	mu  sync.Mutex
	ops []Op // guarded by mu
}

// Add records a completed operation and returns it with its ID set.
func (h *History) Add(op Op) Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	h.ops = append(h.ops, op)
	return op
}

// Ops returns a copy of the operations, sorted by call time.
func (h *History) Ops() []Op {
	h.mu.Lock()
	ops := append([]Op(nil), h.ops...)
	h.mu.Unlock()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call.Before(ops[j].Call) })
	return ops
}

// quorumRefusal starts the message of the 503 a node answers, before
// doing anything, while it cannot reach its region's quorum.
const quorumRefusal = "This node cannot reach the quorum"

// classify says whether a write that returned err may have been applied.
// Every 5xx other than the quorum refusal counts as unknown: a forwarded
// request may have committed in the other region before the answer was
// lost.
func classify(err error) Outcome {
	var se *dpsclient.ServiceError
	if errors.As(err, &se) {
		if se.Status >= 500 && !strings.HasPrefix(se.Message, quorumRefusal) {
			return Unknown
		}
		return Failed
	}
	var de *dpsclient.DeviceError
	if errors.As(err, &de) {
		if de.StatusCode >= 500 && !strings.HasPrefix(de.Message, quorumRefusal) {
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
