package store

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Health of the local view of the cluster (docs/zones.md, readiness).
//
// A monitor goroutine keeps a "ready" flag: false as soon as the embedded
// member knows no leader (it lost the quorum, or an election is running),
// true again once a linearizable read succeeds, which proves that the
// member reaches a quorum and has applied everything committed before the
// read (it caught up). While ready it repeats the read every
// healthRecheck, so a cut-off external cluster is noticed too; a member that
// knows a leader but whose reads time out is taken as overloaded, not cut
// off, until healthFailures reads in a row failed.
const (
	healthPoll    = 100 * time.Millisecond
	healthRecheck = time.Second
	// QuorumCheckTimeout bounds the linearizable read of a health check.
	QuorumCheckTimeout = time.Second
	// healthFailures is how many reads in a row must fail before a member
	// that knows a leader is taken for not ready.
	healthFailures = 3
)

// healthKey is read (never written) by health checks.
const healthKey = rootPrefix + "health"

type health struct {
	mu      sync.Mutex // guards the fields below
	ready   bool
	reason  string
	checked time.Time // last linearizable read, successful or not
	fails   int       // linearizable reads failed in a row

	started bool // the monitor goroutine runs (set once, before it starts)
	ctx     context.Context
	stop    context.CancelFunc
	done    chan struct{}
}

func newHealth() *health {
	ctx, cancel := context.WithCancel(context.Background())
	return &health{reason: "starting", ctx: ctx, stop: cancel, done: make(chan struct{})}
}

func (h *health) set(ready bool, reason string) {
	h.mu.Lock()
	h.ready, h.reason = ready, reason
	h.mu.Unlock()
}

// startMonitor checks health once, then starts the goroutine that
// maintains the ready flag.
func (s *Store) startMonitor() {
	s.checkHealth()
	s.health.started = true
	go func() {
		defer close(s.health.done)
		t := time.NewTicker(healthPoll)
		defer t.Stop()
		for {
			select {
			case <-s.health.ctx.Done():
				return
			case <-t.C:
			}
			s.checkHealth()
		}
	}()
}

func (s *Store) stopMonitor() {
	s.health.stop() // also ends a check in flight
	if s.health.started {
		<-s.health.done
	}
}

func (s *Store) checkHealth() {
	h := s.health
	if !s.HasLeader() {
		h.set(false, errNoLeader.Error())
		return
	}
	h.mu.Lock()
	due := !h.ready || time.Since(h.checked) >= healthRecheck
	h.mu.Unlock()
	if !due {
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, QuorumCheckTimeout)
	err := s.CheckQuorum(ctx)
	cancel()
	if h.ctx.Err() != nil { // stopping
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checked = time.Now()
	if err == nil {
		h.ready, h.reason, h.fails = true, "", 0
		return
	}
	// A member that knows a leader but reads slowly is overloaded rather
	// than cut off (that shows as no leader within an election timeout):
	// only a run of failures turns it not ready.
	if h.fails++; !h.ready || h.fails >= healthFailures || s.etcd == nil {
		h.ready, h.reason = false, err.Error()
	}
}

// CheckQuorum makes one linearizable read, without retries: it succeeds
// only when the member reaches a quorum and has caught up with it.
func (s *Store) CheckQuorum(ctx context.Context) error {
	if !s.HasLeader() {
		return wrapErr(errNoLeader)
	}
	_, err := s.cli.Get(ctx, healthKey, clientv3.WithCountOnly())
	return wrapErr(err)
}

// Ready reports whether this node can serve requests that need the
// quorum: the local member knows a leader and the last health check (at
// most about a second old) read through the quorum. When not ready,
// reason says why. It is cheap: a request gate may call it every time.
func (s *Store) Ready() (ready bool, reason string) {
	if !s.HasLeader() {
		return false, errNoLeader.Error()
	}
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.ready, s.health.reason
}
