package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Group commit limits: an external cluster has etcd's default of 128
// operations per transaction; the embedded member allows more.
const (
	commitWorkers  = 4
	externalMaxOps = 128
	embeddedMaxOps = 1024
)

// Config says where state lives.
type Config struct {
	// DataDir is the node's data directory; the embedded member keeps its
	// files in DataDir/etcd.
	DataDir string
	// Name is the member name (unique in the region).
	Name string
	// Region is the node's region; an instance is writable here only when
	// its directory entry names this region as primary.
	Region string
	// HostedRegions are further regions whose instances this cluster hosts
	// as primary ("*": all); see node.Config.HostedRegions.
	HostedRegions []string
	// ClientURL and PeerURL are the embedded member's listen addresses
	// (http://127.0.0.1:0 is not allowed: pick a port).
	ClientURL, PeerURL string
	// InitialCluster is "name=peerURL,..." for a multi-member region; empty
	// means a single member. It is only read when the member starts with an
	// empty data directory: a restarted member knows its cluster.
	InitialCluster string
	// ClusterState is ClusterStateNew (bootstrap the members of
	// InitialCluster together; the default) or ClusterStateExisting (join
	// a running cluster that already has this member added with
	// MemberAdd). Ignored when the data directory holds a member.
	ClusterState string
	// ClusterToken keeps the members of different clusters apart while
	// they bootstrap (0: "opendps-" + Region). Every member of a region
	// must use the same token.
	ClusterToken string
	// HeartbeatInterval and ElectionTimeout are etcd's Raft timers (0:
	// DefaultHeartbeat and DefaultElectionTimeout). The election timeout
	// bounds how soon followers notice a dead leader; see docs/zones.md.
	HeartbeatInterval, ElectionTimeout time.Duration
	// External, when set, points at an existing etcd cluster instead of an
	// embedded member.
	External []string
	// ExternalTLS secures the connection to External (nil: plain).
	ExternalTLS *tls.Config
	// QuotaBytes is the backend quota (0: 8 GiB).
	QuotaBytes int64
	// CompactionRetention is the periodic auto-compaction window (0: 1h).
	CompactionRetention time.Duration
	// RequestTimeout bounds each attempt of a storage request (0:
	// DefaultRequestTimeout). Reads, and writes that provably did not
	// commit, are retried up to Attempts times (see retry.go).
	RequestTimeout time.Duration
	// Attempts bounds the attempts of one storage request (0:
	// DefaultAttempts; 1 disables retries).
	Attempts int
	// StartTimeout bounds the wait for the member to be ready (0: 60s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

func (c *Config) setDefaults() {
	if c.QuotaBytes == 0 {
		c.QuotaBytes = 8 << 30
	}
	if c.CompactionRetention == 0 {
		c.CompactionRetention = time.Hour
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeat
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.ClusterState == "" {
		c.ClusterState = ClusterStateNew
	}
	if c.ClusterToken == "" {
		c.ClusterToken = "opendps-" + c.Region
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Name == "" {
		c.Name = "node"
	}
}

// Open starts the embedded member (or connects to the external cluster)
// and returns a ready Store.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{log: cfg.Logger, timeout: cfg.RequestTimeout, attempts: cfg.Attempts, region: cfg.Region, hosted: map[string]bool{},
		health: newHealth()}
	for _, r := range cfg.HostedRegions {
		s.hosted[strings.ToLower(strings.ReplaceAll(r, " ", ""))] = true
	}
	if len(cfg.External) > 0 {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: cfg.External, TLS: cfg.ExternalTLS, DialTimeout: cfg.RequestTimeout,
			Logger: zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("store: connect %v: %w", cfg.External, err)
		}
		s.cli = cli
		s.committer = newCommitter(s, commitWorkers, externalMaxOps)
		cctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
		defer cancel()
		if _, err := cli.Get(cctx, rootPrefix+"ping"); err != nil {
			cli.Close()
			return nil, fmt.Errorf("store: external etcd %v: %w", cfg.External, err)
		}
		s.startMonitor()
		return s, nil
	}
	e, err := startEmbedded(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.etcd = e
	s.cli = v3client.New(e.Server)
	s.committer = newCommitter(s, commitWorkers, embeddedMaxOps)
	s.startMonitor()
	return s, nil
}

// Cluster states of Config.ClusterState.
const (
	ClusterStateNew      = embed.ClusterStateFlagNew
	ClusterStateExisting = embed.ClusterStateFlagExisting
)

// Raft timers of the embedded member: etcd's defaults, which suit zones a
// few milliseconds apart (docs/zones.md: the measured leader-failover pause
// is 1.3-1.8 s with them).
const (
	DefaultHeartbeat       = 100 * time.Millisecond
	DefaultElectionTimeout = 1000 * time.Millisecond
)

func (c *Config) validate() error {
	if c.ClusterState != ClusterStateNew && c.ClusterState != ClusterStateExisting {
		return fmt.Errorf("store: cluster state %q is not %s or %s", c.ClusterState, ClusterStateNew, ClusterStateExisting)
	}
	if c.HeartbeatInterval < time.Millisecond || c.ElectionTimeout < 5*c.HeartbeatInterval || c.ElectionTimeout > 50*time.Second {
		return fmt.Errorf("store: election timeout %v must be at least 5 heartbeats (%v) and at most 50s", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.ClusterState == ClusterStateExisting && len(c.External) == 0 && c.InitialCluster == "" {
		return errors.New("store: joining an existing cluster needs its initial cluster (every member, this one included)")
	}
	return nil
}

// startEmbedded starts the member and waits until it has joined its
// cluster (a new multi-member cluster needs a quorum of its members
// started), cfg.StartTimeout at most, or until ctx ends.
func startEmbedded(ctx context.Context, cfg Config) (e *embed.Etcd, err error) {
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = filepath.Join(cfg.DataDir, "etcd")
	cu, err := url.Parse(cfg.ClientURL)
	if err != nil || cu.Host == "" {
		return nil, fmt.Errorf("store: bad client URL %q", cfg.ClientURL)
	}
	pu, err := url.Parse(cfg.PeerURL)
	if err != nil || pu.Host == "" {
		return nil, fmt.Errorf("store: bad peer URL %q", cfg.PeerURL)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + cfg.PeerURL
	}
	ec.InitialClusterToken = cfg.ClusterToken
	ec.ClusterState = cfg.ClusterState
	ec.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	ec.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.QuotaBackendBytes = cfg.QuotaBytes
	// Headroom above what the committer sends: replication applies one
	// source revision (up to embeddedMaxOps operations, about the request
	// limit in bytes) plus its own keys in one transaction.
	ec.MaxTxnOps = embeddedMaxOps + 64
	ec.MaxRequestBytes = 2 * embed.DefaultMaxRequestBytes
	ec.ZapLoggerBuilder = etcdLogger()
	started, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("store: start etcd: %w", err)
	}
	defer func() {
		if err != nil { // "return nil, err" has cleared e
			started.Close()
		}
	}()
	e = started
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return nil, fmt.Errorf("store: etcd failed: %w", err)
	case <-time.After(cfg.StartTimeout):
		return nil, fmt.Errorf("store: etcd did not become ready in %v (does a quorum of the initial cluster run?)", cfg.StartTimeout)
	case <-ctx.Done():
		return nil, fmt.Errorf("store: etcd start: %w", ctx.Err())
	}
	return e, nil
}
