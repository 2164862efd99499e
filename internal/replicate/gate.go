package replicate

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// DefaultStartGrace is how long a starting node keeps writes of DR-enabled
// primary instances closed at most when it cannot confirm contact with the
// secondary region.
const DefaultStartGrace = 10 * time.Second

// gateRecheck bounds how often a closed gate reads a peer's contact record.
const gateRecheck = 100 * time.Millisecond

// StartGate is the start gate of docs/dr-design.md: after a node starts,
// writes of DR-enabled instances primary here are refused
// (store.ErrUnavailable: 503, retryable) until the region's replicator has
// recorded a handshake with the instance's secondary after the start
// (store.PeerContactKey), or the grace period has passed. A region that
// comes back after a failover thus learns its demotion before it accepts a
// write. Install it with store.SetWriteGate(gate.Check). Safe for
// concurrent use; once open for a peer, it stays open.
type StartGate struct {
	st    *store.Store
	start time.Time
	grace time.Duration
	all   atomic.Bool // grace passed

	mu    sync.Mutex
	peers map[string]*peerGate // guarded by mu
}

type peerGate struct {
	open    atomic.Bool
	mu      sync.Mutex
	checked time.Time // guarded by mu
}

// NewStartGate returns the gate of a node started at start (grace 0:
// DefaultStartGrace; negative: the gate is open).
func NewStartGate(st *store.Store, start time.Time, grace time.Duration) *StartGate {
	if grace == 0 {
		grace = DefaultStartGrace
	}
	g := &StartGate{st: st, start: start, grace: grace, peers: map[string]*peerGate{}}
	g.all.Store(grace < 0)
	return g
}

// Check refuses a write of d while the gate is closed for d's secondary.
func (g *StartGate) Check(ctx context.Context, d *model.DirEntry) error {
	if g.all.Load() || !d.DREnabled || d.Secondary == "" || d.Role != model.RolePrimary {
		return nil
	}
	if time.Since(g.start) >= g.grace {
		g.all.Store(true)
		return nil
	}
	p := g.peer(d.Secondary)
	if p.open.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.open.Load() && time.Since(p.checked) >= gateRecheck {
		p.checked = time.Now()
		var at time.Time
		ok, err := g.st.Get(ctx, store.PeerContactKey(d.Secondary), &at)
		if err == nil && ok && at.After(g.start) {
			p.open.Store(true)
		}
	}
	if p.open.Load() {
		return nil
	}
	return fmt.Errorf("%w: %s: writes wait for contact with %s after this node's start (at most %v)",
		store.ErrUnavailable, d.Name, d.Secondary, g.grace)
}

func (g *StartGate) peer(region string) *peerGate {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[region]
	if p == nil {
		p = &peerGate{}
		g.peers[region] = p
	}
	return p
}
