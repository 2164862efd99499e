// Package dr fails instances over between regions (docs/dr-design.md,
// "Failover"): it fences a primary, promotes its secondary, demotes an old
// primary that learns of a newer epoch and keeps the report of the writes
// it held that never reached the new primary.
//
// Every change of role is one etcd transaction per instance that compares
// the stored directory entry, so two changes never interleave and a write
// of the instance (internal/store Update, which compares the same entry)
// cannot commit once its region is no longer the writable primary.
//
// A failover reads directory entries and replication states only: its
// duration does not depend on the number of records of an instance.
//
//	m, _ := dr.New(dr.Config{Store: st, Region: "northeurope", Catalog: cat, Peer: pc})
//	rep, err := m.Failover(ctx, dr.FailoverRequest{From: "westeurope"})
//
// A Manager is safe for concurrent use.
package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of the package. Refusals wrap ErrRefused and say why.
var (
	// ErrRefused: the operation would break a guarantee (residency, a copy
	// still being made, the cool-down, a newer epoch); the message says
	// which.
	ErrRefused = errors.New("dr: refused")
	// ErrResidency is wrapped with ErrRefused for DR-disabled instances.
	ErrResidency = errors.New("data residency: disaster recovery is disabled for this instance")
	// ErrNotFound: no such instance or report in this region.
	ErrNotFound = errors.New("dr: not found")
	// ErrInvalid: a malformed request.
	ErrInvalid = errors.New("dr: invalid request")
	// ErrUnavailable: storage or the peer region could not answer.
	ErrUnavailable = errors.New("dr: unavailable")
)

// Request types (internal/model, shared with the API clients).
type (
	FenceRequest    = model.FenceRequest
	FenceResult     = model.FenceResult
	FailoverRequest = model.FailoverRequest
)

// Defaults.
const (
	// DefaultCooldown is the least time between two failovers of an
	// instance unless forced.
	DefaultCooldown = 5 * time.Minute
	// DefaultDrainTimeout bounds the wait of a planned failover for
	// replication to catch up with the fence.
	DefaultDrainTimeout = 30 * time.Second
	// PeerFenceTimeout bounds a fence over the peer link.
	PeerFenceTimeout = 2 * time.Second
	// opTimeout bounds one etcd request.
	opTimeout = 5 * time.Second
	// drainPoll is how often a planned failover reads the ReplState.
	drainPoll = 20 * time.Millisecond
)

// PathPeerFence is the peer endpoint that fences instances of the region
// serving it (FenceHandler).
const PathPeerFence = peer.PathPrefix + "fence"

// Config configures a Manager.
type Config struct {
	// Store is the region's storage. Required.
	Store *store.Store
	// Region is this region's name. Required.
	Region string
	// Catalog knows the region pairs (nil: the built-in catalog).
	Catalog *regions.Catalog
	// Peer calls the other regions; nil without a peer link (failover
	// then relies on an operator fence, FencedDirectly, or Force).
	Peer *peer.Client
	// Cooldown is the least time between two failovers of an instance
	// (0: DefaultCooldown; negative: none).
	Cooldown time.Duration
	// DrainTimeout bounds the drain of a planned failover (0:
	// DefaultDrainTimeout).
	DrainTimeout time.Duration
	// Log receives what happened (nil: discarded).
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Manager fences, promotes and demotes instances of one region.
type Manager struct {
	cfg    Config
	kv     clientv3.KV // every read and write of the package goes through it
	client *clientv3.Client
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("dr: config: Store is required")
	}
	if cfg.Region == "" {
		return nil, errors.New("dr: config: Region is required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = regions.Builtin()
	}
	switch {
	case cfg.Cooldown == 0:
		cfg.Cooldown = DefaultCooldown
	case cfg.Cooldown < 0:
		cfg.Cooldown = 0
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	m := &Manager{cfg: cfg, client: cfg.Store.Client(), log: cfg.Log, now: cfg.Now}
	m.kv = m.client.KV
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Region is the region of the Manager.
func (m *Manager) Region() string { return m.cfg.Region }

// entry is a directory entry as read, with what a compare needs.
type entry struct {
	d      model.DirEntry
	raw    []byte
	modRev int64
}

// dir reads the directory entry of instance; nil when absent.
func (m *Manager) dir(ctx context.Context, instance string) (*entry, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := m.kv.Get(ctx, store.DirKey(instance))
	if err != nil {
		return nil, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return decodeEntry(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

func decodeEntry(raw []byte, modRev int64) (*entry, error) {
	e := &entry{raw: raw, modRev: modRev}
	if err := json.Unmarshal(raw, &e.d); err != nil {
		return nil, fmt.Errorf("dr: directory entry: %w", err)
	}
	return e, nil
}

// dirs reads every directory entry of the region (a few per instance,
// never an instance's records), in name order.
func (m *Manager) dirs(ctx context.Context) ([]*entry, error) {
	var out []*entry
	key, end := store.DirPrefix(), clientv3.GetPrefixRangeEnd(store.DirPrefix())
	for {
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := m.kv.Get(rctx, key, clientv3.WithRange(end), clientv3.WithLimit(500))
		cancel()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, kv := range resp.Kvs {
			e, err := decodeEntry(kv.Value, kv.ModRevision)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// replState reads the ReplState of instance here; nil when absent.
func (m *Manager) replState(ctx context.Context, instance string) (*model.ReplState, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := m.kv.Get(ctx, store.ReplStateKey(instance))
	if err != nil {
		return nil, unavailable(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rs model.ReplState
	if err := json.Unmarshal(resp.Kvs[0].Value, &rs); err != nil {
		return nil, fmt.Errorf("dr: replication state of %s: %w", instance, err)
	}
	return &rs, nil
}

// swap replaces the directory entry of instance, read as old, by d in one
// transaction compared on old's value, plus ops; ok is false when the
// entry changed since it was read.
func (m *Manager) swap(ctx context.Context, old *entry, d model.DirEntry, ops ...clientv3.Op) (resp *clientv3.TxnResponse, ok bool, err error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	key := store.DirKey(d.Name)
	resp, err = m.kv.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", string(old.raw))).
		Then(append([]clientv3.Op{clientv3.OpPut(key, string(b))}, ops...)...).Commit()
	if err != nil {
		return nil, false, unavailable(err)
	}
	return resp, resp.Succeeded, nil
}

func unavailable(err error) error { return fmt.Errorf("%w: %v", ErrUnavailable, err) }

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}
