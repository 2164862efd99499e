package dr

import (
	"fmt"
	"time"

	"github.com/opendps/opendps/dpstest/history"
)

// Op is one recorded operation. Call and Return are wall-clock times (the
// failover report's times are wall-clock times of the same machine).
type Op struct {
	ID      int
	Worker  int
	Load    string // the workload that issued it
	Kind    history.Kind
	Key     string // enrollment or device registration id
	Via     string // "frontdoor" or the region whose endpoint was called
	Proto   string // https or mqtt (registrations)
	In      string // value written
	Out     string // value read or registered
	Outcome history.Outcome
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

// WithID and CalledBefore make Op a history.Recorded.
func (o Op) WithID(id int) Op       { o.ID = id; return o }
func (o Op) CalledBefore(p Op) bool { return o.Call.Before(p.Call) }

// History collects operations from concurrent workers.
type History = history.History[Op]
