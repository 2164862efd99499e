package fault

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Kind is the kind of a recorded operation.
type Kind string

// Operation kinds. Writes are enrollment puts and registrations.
const (
	EnrollmentPut   Kind = "enrollment.put"   // service API PUT /enrollments/{id}, value in deviceId
	EnrollmentGet   Kind = "enrollment.get"   // service API GET /enrollments/{id}
	Register        Kind = "register"         // device API register (group symmetric key), until assigned
	RegistrationGet Kind = "registration.get" // service API GET /registrations/{id}
	FinalRead       Kind = "final.read"       // serializable read of one member at the end
)

func (k Kind) write() bool { return k == EnrollmentPut || k == Register }

// Outcome of an operation.
type Outcome int

const (
	// OK: the server acknowledged; Out holds what it answered.
	OK Outcome = iota
	// Failed: definitely not applied (refused connection, 4xx). Failed
	// reads carry no information either.
	Failed
	// Unknown: may or may not have been applied (timeout, reset, 5xx,
	// a registration that ended "failed").
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"ok", "failed", "unknown"}[o]
}

// Absent is the value of a key that does not exist; AnyValue is what an
// unknown registration may have written (an assignment or a failure).
const (
	Absent   = ""
	AnyValue = "?"
)

// Op is one recorded operation. Times are offsets from the start of the
// history (monotonic clock).
type Op struct {
	ID      int
	Worker  int
	Kind    Kind
	Key     string // enrollment or device registration id
	Node    int    // node the request went to (member for FinalRead)
	In      string // value written
	Out     string // value read or registered
	Outcome Outcome
	Call    time.Duration
	Return  time.Duration
	Err     string
}

func (o Op) String() string {
	s := fmt.Sprintf("#%d w%d %s %s node%d", o.ID, o.Worker, o.Kind, o.Key, o.Node+1)
	if o.In != "" {
		s += " in=" + o.In
	}
	s += fmt.Sprintf(" -> %s out=%q [%v, %v]", o.Outcome, o.Out, o.Call.Round(time.Millisecond), o.Return.Round(time.Millisecond))
	if o.Err != "" {
		s += " err=" + o.Err
	}
	return s
}

// History collects operations from concurrent workers.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op // guarded by mu
}

func newHistory() *History { return &History{start: time.Now()} }

// Now is the current offset.
func (h *History) Now() time.Duration { return time.Since(h.start) }

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
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	return ops
}

// Never is the return time given to operations of unknown outcome: they
// may take effect at any point after their call.
const Never = time.Duration(math.MaxInt64 / 2)
