package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Defaults of Config.
const (
	DefaultHelloInterval  = time.Second
	DefaultStatusInterval = time.Second
	DefaultMaxBatchOps    = 1000
	DefaultMaxBatchBytes  = 1 << 20
	DefaultSessionTTL     = 5 // seconds
	copyPageSize          = 500
	requestTimeout        = 10 * time.Second
	maxBackoff            = 5 * time.Second
	minBackoff            = 100 * time.Millisecond
	contactEvery          = 500 * time.Millisecond
	// maxPendingRevs bounds the revisions a stream holds in memory for a
	// slow destination.
	maxPendingRevs = 100_000
	// progressEvery is how often an idle stream moves the destination's
	// revision forward (watch progress), so that a restart long after the
	// last change resumes instead of copying again once the source has
	// compacted.
	progressEvery = 30 * time.Second
)

// Config configures the source side.
type Config struct {
	// Store is the region's store; Peer the link to the other regions.
	// Both required; the region is Peer.Region().
	Store *store.Store
	Peer  *peer.Client
	// Demoter demotes an instance whose destination answers with a higher
	// epoch. Nil: the stream keeps retrying until one is wired.
	Demoter Demoter
	// Name identifies this node in the election (default: the region).
	Name string
	// HelloInterval is the idle handshake period (0: 1s); StatusInterval
	// how often ReplStatus records are stored (0: 1s).
	HelloInterval, StatusInterval time.Duration
	// MaxBatchOps and MaxBatchBytes bound one batch (0: 1000 and 1 MiB); a
	// single source revision larger than that is sent whole.
	MaxBatchOps, MaxBatchBytes int
	// SessionTTL is the election lease in seconds (0: 5): how long a
	// crashed replicator holds the region's election.
	SessionTTL int
	Log        *slog.Logger
}

// Source is the elected replicator of a region. Start it once; Close stops
// it. It is safe for concurrent use.
type Source struct {
	cfg    Config
	region string
	cli    *clientv3.Client
	m      *metrics
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // streams running

	// access, when set (tests), is called before every read or watch the
	// source issues, with the key or prefix.
	access func(op, key string)
	// acked, when set (tests), is called with the receive times of the
	// revisions of every acknowledged batch of changes.
	acked func(ats []time.Time)
	// progressEvery is the idle progress period (tests shorten it).
	progressEvery time.Duration

	mu       sync.Mutex
	leading  bool                 // guarded by mu
	streams  map[string]*streamer // instance -> stream; guarded by mu
	contacts map[string]time.Time // peer -> last contact put; guarded by mu
}

// NewSource returns a source; Start runs it.
func NewSource(cfg Config) (*Source, error) {
	if cfg.Store == nil || cfg.Peer == nil {
		return nil, errors.New("replicate: config: Store and Peer are required")
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Peer.Region()
	}
	if cfg.HelloInterval <= 0 {
		cfg.HelloInterval = DefaultHelloInterval
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.MaxBatchOps <= 0 {
		cfg.MaxBatchOps = DefaultMaxBatchOps
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Source{cfg: cfg, region: cfg.Peer.Region(), cli: cfg.Store.Client(), m: defaultMetrics(),
		streams: map[string]*streamer{}, contacts: map[string]time.Time{}, progressEvery: progressEvery}, nil
}

// Start campaigns for the region's replicator and, once elected, runs the
// streams.
func (s *Source) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			if err := s.lead(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("replicator stopped leading", "err", err)
				sleep(ctx, time.Second)
			}
		}
	}()
}

// Close stops the streams and resigns. It is idempotent.
func (s *Source) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.wg.Wait()
}

// Leading reports whether this source is the region's replicator.
func (s *Source) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading
}

func (s *Source) touch(op, key string) {
	if s.access != nil {
		s.access(op, key)
	}
}

// lead wins the election and runs the streams until the session or ctx
// ends.
func (s *Source) lead(ctx context.Context) error {
	// The session ends with ctx; the explicit Resign below hands the
	// election over at once (the lease would take SessionTTL).
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(s.cfg.SessionTTL), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, store.ElectionPrefix("replicator"))
	if err := el.Campaign(ctx, s.cfg.Name); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-lctx.Done():
		}
	}()
	s.setLeading(true)
	defer s.setLeading(false)
	s.cfg.Log.Info("replicator elected", "name", s.cfg.Name)
	err = s.manage(lctx, el)
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	defer rcancel()
	el.Resign(rctx)
	return err
}

func (s *Source) setLeading(v bool) {
	s.mu.Lock()
	s.leading = v
	s.mu.Unlock()
}

// eligible reports whether this region streams d.
func (s *Source) eligible(d *model.DirEntry) bool {
	return d != nil && d.DREnabled && d.Primary == s.region && d.Secondary != "" &&
		(d.Role == model.RolePrimary || d.Role == model.RoleFenced) && s.cfg.Peer.Knows(d.Secondary)
}

// manage runs one stream per eligible directory entry, following the
// directory, and stores the streams' status.
func (s *Source) manage(ctx context.Context, el *concurrency.Election) error {
	ctx = clientv3.WithRequireLeader(ctx)
	s.touch("get", store.DirPrefix())
	resp, err := s.cli.Get(ctx, store.DirPrefix(), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	defer s.stopAll()
	for _, kv := range resp.Kvs {
		s.consider(ctx, el, string(kv.Key), kv.Value)
	}
	s.touch("watch", store.DirPrefix())
	wch := s.cli.Watch(ctx, store.DirPrefix(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	tick := time.NewTicker(s.cfg.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-wch:
			if !ok {
				return errors.New("replicate: directory watch closed")
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				var v []byte
				if ev.Type == clientv3.EventTypePut {
					v = ev.Kv.Value
				}
				s.consider(ctx, el, string(ev.Kv.Key), v)
			}
		case <-tick.C:
			s.storeStatus(ctx, el)
		}
	}
}

// consider starts, restarts or stops the stream of one directory entry
// (raw nil: deleted).
func (s *Source) consider(ctx context.Context, el *concurrency.Election, key string, raw []byte) {
	name := key[len(store.DirPrefix()):]
	var d *model.DirEntry
	if raw != nil {
		d = &model.DirEntry{}
		if err := json.Unmarshal(raw, d); err != nil {
			s.cfg.Log.Error("bad directory entry", "instance", name, "err", err)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.streams[name]
	switch {
	case d == nil:
		// The running stream replicates the deletion and ends by itself.
		return
	case !s.eligible(d):
		if cur != nil {
			cur.stop()
			delete(s.streams, name)
			s.forget(ctx, el, cur)
		}
		return
	case cur != nil && !cur.ended() && cur.dir == streamDir(*d):
		return
	}
	if cur != nil {
		cur.stop()
	}
	st := newStreamer(ctx, s, *d)
	s.streams[name] = st
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		st.run(el)
	}()
}

// forget removes what a stopped stream left: its lag series and status.
func (s *Source) forget(ctx context.Context, el *concurrency.Election, st *streamer) {
	s.m.lag.DeleteLabelValues(st.dir.Name, st.dir.Secondary)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		s.leaderTxn(cctx, el, clientv3.OpDelete(store.ReplStatusKey(st.dir.Name)))
	}()
}

func (s *Source) stopAll() {
	s.mu.Lock()
	all := s.streams
	s.streams = map[string]*streamer{}
	s.mu.Unlock()
	for _, st := range all {
		st.stop()
	}
	for _, st := range all {
		<-st.done
		s.m.lag.DeleteLabelValues(st.dir.Name, st.dir.Secondary)
	}
}

// leaderTxn applies ops only while el is this node's leadership.
func (s *Source) leaderTxn(ctx context.Context, el *concurrency.Election, ops ...clientv3.Op) error {
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errors.New("replicate: no longer the replicator")
	}
	return nil
}

// storeStatus writes the ReplStatus of every stream, 100 per transaction,
// and removes the streams that ended.
func (s *Source) storeStatus(ctx context.Context, el *concurrency.Election) {
	s.mu.Lock()
	var ops []clientv3.Op
	for name, st := range s.streams {
		if st.ended() {
			delete(s.streams, name)
			s.m.lag.DeleteLabelValues(st.dir.Name, st.dir.Secondary)
			ops = append(ops, clientv3.OpDelete(store.ReplStatusKey(name)))
			continue
		}
		b, _ := json.Marshal(st.status())
		ops = append(ops, clientv3.OpPut(store.ReplStatusKey(name), string(b)))
	}
	s.mu.Unlock()
	for len(ops) > 0 {
		n := min(len(ops), 100)
		cctx, cancel := context.WithTimeout(ctx, requestTimeout)
		if err := s.leaderTxn(cctx, el, ops[:n]...); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("storing replication status failed", "err", err)
		}
		cancel()
		ops = ops[n:]
	}
}

// contacted records a handshake with peer (store.PeerContactKey), at most
// every contactEvery.
func (s *Source) contacted(ctx context.Context, el *concurrency.Election, peerRegion string) {
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.contacts[peerRegion]) < contactEvery {
		s.mu.Unlock()
		return
	}
	s.contacts[peerRegion] = now
	s.mu.Unlock()
	b, _ := json.Marshal(now.UTC())
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if err := s.leaderTxn(cctx, el, clientv3.OpPut(store.PeerContactKey(peerRegion), string(b))); err != nil && ctx.Err() == nil {
		s.cfg.Log.Warn("recording peer contact failed", "peer", peerRegion, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf("replicate: "+format, args...) }
