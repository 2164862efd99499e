package fault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
)

// FaultKind is one way of losing a zone.
type FaultKind string

// The faults, one zone (= one node here) at a time.
const (
	KillLeader   FaultKind = "kill-leader"   // SIGKILL the etcd leader's node, restart it after the window
	KillFollower FaultKind = "kill-follower" // SIGKILL a follower's node, restart it after the window
	Freeze       FaultKind = "freeze"        // SIGSTOP a node, SIGCONT after the window
	Partition    FaultKind = "partition"     // cut a node off from its peers (both directions), heal after the window
	Restart      FaultKind = "restart"       // graceful restart (SIGTERM, start, ready)
)

// allFaults is the list every seed runs, in a seeded order.
var allFaults = []FaultKind{KillLeader, KillFollower, Freeze, Partition, Restart}

// Phases of an episode.
type phases struct {
	Healthy  time.Duration // measured before the fault
	Degraded time.Duration // the fault lasts this long (from injection)
	Settle   time.Duration // after the cluster is healthy again
	Recover  time.Duration // bound on the return to health
}

var defaultPhases = phases{Healthy: 2 * time.Second, Degraded: 5 * time.Second, Settle: 500 * time.Millisecond, Recover: 60 * time.Second}

// Episode is one fault injected into a running cluster and what it did.
type Episode struct {
	Seed    int64
	Index   int
	Fault   FaultKind
	Node    int
	Role    string // leader or follower when the fault hit
	Skipped string // why the fault could not be injected

	// History offsets: the healthy window starts, the fault is in effect
	// (a restart: SIGTERM sent), the fault is undone, the cluster is
	// healthy again.
	Start, Inject, Healed, Healthy time.Duration

	Pause        time.Duration // inject -> first ack of a write issued after it; -1: none
	HealthyRate  float64       // acknowledged ops/s before the fault
	DegradedRate float64       // acknowledged ops/s from the end of the pause to the heal
	Failed       int           // ops issued during the episode that failed
	Unknown      int           // ... whose outcome is unknown
	Recovery     time.Duration // heal -> cluster healthy
	Waits        []string      // what the recovery waited for
}

// injector runs the episodes of one seed against a cluster.
type injector struct {
	c   *cluster.Cluster
	w   *workload
	rng *rand.Rand
	ph  phases
	log func(format string, args ...any)
}

// episode injects fault f, holds it for the degraded window, heals, and
// waits for the cluster to be healthy. An error means the cluster did not
// recover (the seed cannot continue).
func (in *injector) episode(ctx context.Context, ep *Episode) error {
	h := in.w.h
	ep.Start = h.Now()
	sleep(ctx, in.ph.Healthy)
	leader, err := in.c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	ep.Node = in.target(ep.Fault, leader)
	ep.Role = "follower"
	if ep.Node == leader {
		ep.Role = "leader"
	}
	if ep.Fault == Partition && !in.c.CanPartition() {
		ep.Skipped = cluster.ErrPartitionUnsupported.Error()
		ep.Inject, ep.Healed, ep.Healthy = h.Now(), h.Now(), h.Now()
		return nil
	}
	in.w.epoch.Add(1)
	ep.Inject = h.Now()
	if err := in.inject(ctx, ep); err != nil {
		return fmt.Errorf("inject %s on %s: %w", ep.Fault, in.c.Name(ep.Node), err)
	}
	if ep.Fault != Restart {
		// The fault is in effect once inject returns (the process is dead,
		// stopped, or every route is cut); a restart starts with SIGTERM.
		ep.Inject = h.Now()
	}
	sleep(ctx, ep.Inject+in.ph.Degraded-h.Now())
	if err := in.heal(ep); err != nil {
		return fmt.Errorf("heal %s on %s: %w", ep.Fault, in.c.Name(ep.Node), err)
	}
	ep.Healed = h.Now()
	if err := in.recover(ctx, ep); err != nil {
		return fmt.Errorf("after %s of %s: %w", ep.Fault, in.c.Name(ep.Node), err)
	}
	ep.Healthy = h.Now()
	ep.Recovery = ep.Healthy - ep.Healed
	in.log("episode %d: %s of %s (%s, zone %s): healthy again %v after heal%s",
		ep.Index, ep.Fault, in.c.Name(ep.Node), ep.Role, in.c.Zone(ep.Node), ep.Recovery.Round(time.Millisecond), ep.waited())
	sleep(ctx, in.ph.Settle)
	return nil
}

// recover waits until the cluster is healthy, noting what it waited for
// (each distinct reason, with the offset it was first seen at).
func (in *injector) recover(ctx context.Context, ep *Episode) error {
	ctx, cancel := context.WithTimeout(ctx, in.ph.Recover)
	defer cancel()
	last := ""
	for {
		err := in.c.Healthy(ctx)
		if err == nil {
			return nil
		}
		if reason := reasonOf(err); reason != last {
			last = reason
			ep.Waits = append(ep.Waits, fmt.Sprintf("+%v %s", (in.w.h.Now()-ep.Healed).Round(time.Millisecond), reason))
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reasonOf shortens a health error to what kind of wait it is.
func reasonOf(err error) string {
	s := err.Error()
	if i := strings.Index(s, " applied "); i >= 0 {
		return s[:i] + " catching up"
	}
	return s
}

// waited renders the reasons of a recovery that took over a second.
func (ep *Episode) waited() string {
	if ep.Recovery < time.Second || len(ep.Waits) == 0 {
		return ""
	}
	return "; waited for: " + strings.Join(ep.Waits, "; ")
}

// target picks the node a fault hits: the leader, a follower, or any node.
func (in *injector) target(f FaultKind, leader int) int {
	n := in.c.N()
	switch f {
	case KillLeader:
		return leader
	case KillFollower:
		return (leader + 1 + in.rng.IntN(n-1)) % n
	}
	return in.rng.IntN(n)
}

func (in *injector) inject(ctx context.Context, ep *Episode) error {
	switch ep.Fault {
	case KillLeader, KillFollower:
		return in.c.Kill(ep.Node)
	case Freeze:
		return in.c.Freeze(ep.Node)
	case Partition:
		return in.c.Partition(ep.Node)
	case Restart:
		rctx, cancel := context.WithTimeout(ctx, in.ph.Recover)
		defer cancel()
		return in.c.Restart(rctx, ep.Node)
	}
	return fmt.Errorf("unknown fault %q", ep.Fault)
}

func (in *injector) heal(ep *Episode) error {
	switch ep.Fault {
	case KillLeader, KillFollower:
		return in.c.Start(ep.Node)
	case Freeze:
		return in.c.Thaw(ep.Node)
	case Partition:
		return in.c.Heal(ep.Node)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// measure computes an episode's figures from the history.
func (ep *Episode) measure(ops []Op) {
	ep.Pause = -1
	if ep.Skipped != "" {
		return
	}
	first := Never
	for _, op := range ops {
		if op.Kind.Write() && op.Outcome == history.OK && op.Call >= ep.Inject && op.Return < first {
			first = op.Return
		}
		if op.Call >= ep.Inject && op.Call < ep.Healthy && op.Kind != history.FinalRead {
			switch op.Outcome {
			case history.Failed:
				ep.Failed++
			case history.Unknown:
				ep.Unknown++
			}
		}
	}
	if first != Never {
		ep.Pause = first - ep.Inject
	}
	ep.HealthyRate = rate(ops, ep.Start, ep.Inject)
	if ep.Pause >= 0 {
		ep.DegradedRate = rate(ops, ep.Inject+ep.Pause, ep.Healed)
	}
}

// rate is the number of acknowledged operations completed in [from, to)
// per second.
func rate(ops []Op, from, to time.Duration) float64 {
	if to-from < 500*time.Millisecond {
		return 0
	}
	n := 0
	for _, op := range ops {
		if op.Outcome == history.OK && op.Kind != history.FinalRead && op.Return >= from && op.Return < to {
			n++
		}
	}
	return float64(n) / (to - from).Seconds()
}
