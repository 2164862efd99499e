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
	// means a single member.
	InitialCluster string
	// External, when set, points at an existing etcd cluster instead of an
	// embedded member.
	External []string
	// ExternalTLS secures the connection to External (nil: plain).
	ExternalTLS *tls.Config
	// QuotaBytes is the backend quota (0: 8 GiB).
	QuotaBytes int64
	// CompactionRetention is the periodic auto-compaction window (0: 1h).
	CompactionRetention time.Duration
	// RequestTimeout bounds each storage request (0: 5s).
	RequestTimeout time.Duration
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
		c.RequestTimeout = 5 * time.Second
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
	s := &Store{log: cfg.Logger, timeout: cfg.RequestTimeout, region: cfg.Region, hosted: map[string]bool{}}
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
		return s, nil
	}
	e, err := startEmbedded(cfg)
	if err != nil {
		return nil, err
	}
	s.etcd = e
	s.cli = v3client.New(e.Server)
	s.committer = newCommitter(s, commitWorkers, embeddedMaxOps)
	return s, nil
}

func startEmbedded(cfg Config) (e *embed.Etcd, err error) {
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
	ec.InitialClusterToken = "opendps-" + cfg.Region
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	ec.QuotaBackendBytes = cfg.QuotaBytes
	ec.MaxTxnOps = embeddedMaxOps
	ec.ZapLoggerBuilder = etcdLogger()
	e, err = embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("store: start etcd: %w", err)
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return nil, fmt.Errorf("store: etcd failed: %w", err)
	case <-time.After(cfg.StartTimeout):
		return nil, errors.New("store: etcd did not become ready in time")
	}
	return e, nil
}
