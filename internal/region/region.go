// Package region is the operator's view of a region (DESIGN §6): its
// nodes, the etcd members they run, the zone of each member, the leader,
// the health of every member, and whether the region is zone-redundant.
// It also changes the membership at run time and takes snapshots.
//
// Keys (region-local: never replicated to another region):
//
//	/opendps/node/{region}/{name}    Node, bound to the node's lease: present while the node lives
//	/opendps/member/{region}/{name}  MemberRecord: the zone of a member, kept while it is a member
//
// A node registers itself when it starts (Start) and keeps its lease alive;
// a dead or cut-off node's entry disappears when the lease expires (TTL
// LeaseTTL). The member record outlives the node, so the status still
// knows the zone of a member that is down.
//
//	r, err := region.New(region.Config{Store: st, Catalog: cat, Self: node})
//	r.Start()
//	defer r.Close()
//	st, err := r.Status(ctx)   // st.ZoneRedundant, st.Reason, st.Leader ...
//
// A Region is safe for concurrent use.
package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors of the package.
var (
	// ErrInvalid: a malformed request (bad name or URL).
	ErrInvalid = errors.New("region: invalid request")
	// ErrNotFound: no member of that name.
	ErrNotFound = errors.New("region: no such member")
	// ErrExists: a member of that name or peer URL exists.
	ErrExists = errors.New("region: member exists")
	// ErrRefused: the change would break the region (last member, quorum,
	// the answering node itself); --force overrides.
	ErrRefused = errors.New("region: refused")
	// ErrExternal: the region runs on an external etcd cluster, whose
	// membership is managed with etcd's own tools.
	ErrExternal = errors.New("region: external etcd cluster")
)

const (
	nodePrefix   = "/opendps/node/"
	memberPrefix = "/opendps/member/"

	// DefaultLeaseTTL is how long a dead node stays in the registry.
	DefaultLeaseTTL = 10 * time.Second
	// statusTimeout bounds the status of one member.
	statusTimeout = time.Second
	// zonesRefresh is how often the cached zone redundancy is recomputed.
	zonesRefresh = 5 * time.Second
)

// NodeKey is the registry key of node name in region.
func NodeKey(region, name string) string { return nodePrefix + region + "/" + name }

// MemberKey is the key of the member record of name in region.
func MemberKey(region, name string) string { return memberPrefix + region + "/" + name }

// Types of the region API, defined in internal/model so that clients can
// use them without etcd.
type (
	Node         = model.RegionNode
	Endpoints    = model.NodeEndpoints
	MemberRecord = model.MemberRecord
	Member       = model.RegionMember
	Status       = model.RegionStatus
	AddRequest   = model.MemberAddRequest
	AddResult    = model.MemberAddResult
)

// Config configures a Region.
type Config struct {
	// Store is the node's store. Required.
	Store *store.Store
	// Catalog says whether the region has availability zones. Required.
	Catalog *regions.Catalog
	// Self is this node's registry entry; Region and Name are required.
	// MemberID and Started are filled in.
	Self Node
	// LeaseTTL of the registry entry (0: DefaultLeaseTTL).
	LeaseTTL time.Duration
	// Log receives registry problems; nil discards.
	Log *slog.Logger
}

// Region is the view of this node's region.
type Region struct {
	cfg    Config
	st     *store.Store
	cli    *clientv3.Client
	log    *slog.Logger
	self   Node
	region regions.Region
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	lease   clientv3.LeaseID
	peers   *clientv3.Client
	peerEPs string // endpoints peers was made for
	zones   zoneState

	liveNodes atomic.Int64 // live nodes of the region, as of the last refresh
}

// zoneState is the cached outcome of the zone-redundancy rule.
type zoneState struct {
	known     bool
	redundant bool
	zones     []string
	reason    string
}

// New validates cfg and returns a Region; Start registers the node.
func New(cfg Config) (*Region, error) {
	if cfg.Store == nil || cfg.Catalog == nil {
		return nil, errors.New("region: config: Store and Catalog are required")
	}
	if cfg.Self.Name == "" || cfg.Self.Region == "" {
		return nil, errors.New("region: config: Self.Name and Self.Region are required")
	}
	reg, err := cfg.Catalog.Lookup(cfg.Self.Region)
	if err != nil {
		return nil, fmt.Errorf("region: config: %w", err)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Region{cfg: cfg, st: cfg.Store, cli: cfg.Store.Client(), log: cfg.Log, self: cfg.Self, region: reg}
	r.self.Region = reg.Name
	if e := cfg.Store.Etcd(); e != nil {
		r.self.MemberID = e.Server.MemberID().String()
	}
	if r.self.Started.IsZero() {
		r.self.Started = time.Now().UTC()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Name is the normalized name of the region.
func (r *Region) Name() string { return r.region.Name }

// Self returns this node's registry entry.
func (r *Region) Self() Node { return r.self }

// Start registers this node (a lease kept alive in the background) and
// starts refreshing the cached zone redundancy. The first registration is
// made before Start returns, unless it fails (then it is retried in the
// background). Call it once.
func (r *Region) Start() {
	ch, err := r.register(r.ctx)
	if err != nil {
		r.log.Warn("node registration failed; retrying", "err", err)
		ch = nil
	}
	r.refreshZones(r.ctx)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.keepRegistered(ch)
	}()
	go func() {
		defer r.wg.Done()
		r.followZones()
	}()
}

// followZones recomputes the cached zone redundancy when a member record
// changes (a node registering, a member added or removed through opendps)
// and every zonesRefresh (membership changed with etcd's own tools).
func (r *Region) followZones() {
	t := time.NewTicker(zonesRefresh)
	defer t.Stop()
	wch := r.cli.Watch(r.ctx, memberPrefix+r.region.Name+"/", clientv3.WithPrefix())
	for {
		select {
		case <-r.ctx.Done():
			return
		case _, ok := <-wch:
			if !ok { // canceled (compaction, or the member restarting): poll only
				wch = nil
			}
		case <-t.C:
		}
		r.refreshZones(r.ctx)
	}
}

// Close deregisters the node (best effort: revoking its lease removes its
// entry at once) and stops the background work. It is idempotent.
func (r *Region) Close() {
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers != nil {
		r.peers.Close()
		r.peers = nil
	}
}

// ZoneRedundancy returns the cached outcome of the zone-redundancy rule
// for this region (refreshed every few seconds; membership changes are
// rare): whether the region is zone-redundant, the zones of its voting
// members, and why not. It does not block.
func (r *Region) ZoneRedundancy() (redundant bool, zones []string, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.zones.known {
		return false, nil, "not known yet"
	}
	return r.zones.redundant, r.zones.zones, r.zones.reason
}

// Nodes returns the number of live nodes of the region (registry entries,
// which a dead or cut-off node loses when its lease expires), as of the
// last refresh: every few seconds, and when a member record changes. 0
// before the first refresh. It does not block (an atomic load), so the
// throttle calls it on every request to share per-instance limits among
// the nodes (docs/provisioning-engine.md).
func (r *Region) Nodes() int { return int(r.liveNodes.Load()) }

func (r *Region) refreshZones(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	members, nodes, err := r.members(ctx)
	if err != nil {
		r.log.Debug("zone redundancy not refreshed", "err", err)
		return
	}
	r.liveNodes.Store(int64(len(nodes)))
	ok, zones, reason := Redundancy(r.region, publicMembers(members))
	if r.st.Etcd() == nil && !ok {
		reason = externalReason(reason)
	}
	r.mu.Lock()
	r.zones = zoneState{known: true, redundant: ok, zones: zones, reason: reason}
	r.mu.Unlock()
}

func externalReason(reason string) string {
	return "the region runs on an external etcd cluster whose members opendps does not place in zones: " + reason
}

// peerClient returns a gRPC client of the members' client URLs, for
// per-member Status calls (the in-process client only reaches the local
// member).
func (r *Region) peerClient(endpoints []string) (*clientv3.Client, error) {
	key := strings.Join(endpoints, ",")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers != nil && r.peerEPs == key {
		return r.peers, nil
	}
	if r.peers != nil {
		r.peers.Close()
		r.peers = nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: statusTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	r.peers, r.peerEPs = cli, key
	return cli, nil
}
