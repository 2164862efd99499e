package fault

import (
	"fmt"
	"time"

	"github.com/opendps/opendps/dpstest/history"
)

// Op is one recorded operation. Times are offsets from the start of the
// history (monotonic clock).
type Op struct {
	ID      int
	Worker  int
	Kind    history.Kind
	Key     string // enrollment or device registration id
	Node    int    // node the request went to (member for FinalRead)
	In      string // value written
	Out     string // value read or registered
	Outcome history.Outcome
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

// WithID and CalledBefore make Op a history.Recorded.
func (o Op) WithID(id int) Op       { o.ID = id; return o }
func (o Op) CalledBefore(p Op) bool { return o.Call < p.Call }
func (o Op) checked() history.Checked {
	return history.Checked{Worker: o.Worker, Kind: o.Kind, Key: o.Key, In: o.In, Out: o.Out, Outcome: o.Outcome,
		Call: int64(o.Call), Return: int64(o.Return), Meta: fmt.Sprintf("op #%d via node%d: %s", o.ID, o.Node+1, o.Err)}
}

// History collects operations from concurrent workers.
type History struct {
	start time.Time
	history.History[Op]
}

func newHistory() *History { return &History{start: time.Now()} }

// Now is the current offset.
func (h *History) Now() time.Duration { return time.Since(h.start) }

// Never is the return time given to operations of unknown outcome: they
// may take effect at any point after their call.
const Never = time.Duration(history.Never)
