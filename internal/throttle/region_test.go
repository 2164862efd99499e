package throttle

import (
	"sync/atomic"
	"testing"
	"time"
)

// burst counts how many calls allow passes at the current time, up to max.
func burst(allow func() (bool, time.Duration), max int) int {
	for i := range max {
		if ok, _ := allow(); !ok {
			return i
		}
	}
	return max
}

// With Config.Nodes, each node allows its share of the per-instance limits,
// so a region of three nodes behind a balancer allows about the configured
// limit, not three times it; polls per device stay per node.
func TestRegionWideLimits(t *testing.T) {
	var nodes atomic.Int64
	nodes.Store(3)
	clk := newFakeClock()
	var region []*Limiter
	for range 3 {
		l, err := New(Config{RegistrationsPerMinute: 30, OperationsPerMinute: 60, PollsPer10s: 5,
			Nodes: func() int { return int(nodes.Load()) }, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		region = append(region, l)
	}
	l := region[0]
	if got := burst(func() (bool, time.Duration) { return l.AllowRegister("i") }, 100); got != 10 {
		t.Errorf("registrations on one of 3 nodes = %d, want 30/3 = 10", got)
	}
	if got := burst(func() (bool, time.Duration) { return l.AllowOperation("i") }, 100); got != 20 {
		t.Errorf("operations on one of 3 nodes = %d, want 60/3 = 20", got)
	}
	if got := burst(func() (bool, time.Duration) { return l.AllowPoll("i", "dev") }, 100); got != 5 {
		t.Errorf("polls of one device on one node = %d, want 5 (not shared)", got)
	}
	if ok, wait := l.AllowRegister("i"); ok || wait != 6*time.Second {
		t.Errorf("refusal = %v, Retry-After %v; want 6 s (one token per 60 s / 10)", ok, wait)
	}

	// The region as a whole: requests spread round robin over its nodes.
	total := 0
	for i := range 300 {
		if ok, _ := region[1+i%2].AllowRegister("j"); ok {
			total++
		}
		if ok, _ := region[0].AllowRegister("j"); ok {
			total++
		}
	}
	if total != 30 {
		t.Errorf("registrations allowed by the region = %d, want the configured 30", total)
	}

	// Two nodes die: after a minute the survivor has the whole limit.
	nodes.Store(1)
	clk.Advance(time.Minute)
	if got := burst(func() (bool, time.Duration) { return l.AllowRegister("i") }, 100); got != 30 {
		t.Errorf("registrations on the last node = %d, want 30", got)
	}
	if l.Nodes() != 1 {
		t.Errorf("Nodes() = %d", l.Nodes())
	}
	nodes.Store(0) // not known yet: alone
	clk.Advance(time.Minute)
	if got := burst(func() (bool, time.Duration) { return l.AllowRegister("i") }, 100); got != 30 || l.Nodes() != 1 {
		t.Errorf("with Nodes() = 0: %d registrations, Nodes %d; want 30, 1", got, l.Nodes())
	}
}

// A limit smaller than the number of nodes still allows one per node and
// period (never zero, which would read as unlimited); unlimited stays
// unlimited.
func TestRegionWideLimitEdges(t *testing.T) {
	five := func() int { return 5 }
	l, _ := newLimiter(t, Config{RegistrationsPerMinute: 2, OperationsPerMinute: -1, Nodes: five})
	if got := burst(func() (bool, time.Duration) { return l.AllowRegister("i") }, 10); got != 1 {
		t.Errorf("2/min over 5 nodes: %d allowed, want 1", got)
	}
	if got := burst(func() (bool, time.Duration) { return l.AllowOperation("i") }, 1000); got != 1000 {
		t.Errorf("unlimited operations over 5 nodes: %d allowed", got)
	}
}
