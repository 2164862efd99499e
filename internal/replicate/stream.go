package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// streamer replicates one instance to its secondary.
type streamer struct {
	s      *Source
	dir    model.DirEntry // streamDir of the entry the stream was started for
	full   model.DirEntry // the entry as read (with its role)
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	forceCopy bool      // the next handshake starts a base copy; used by run only
	started   time.Time // when the stream was made

	mu sync.Mutex
	st model.ReplStatus // guarded by mu
}

func newStreamer(parent context.Context, s *Source, d model.DirEntry) *streamer {
	ctx, cancel := context.WithCancel(parent)
	return &streamer{s: s, dir: streamDir(d), full: d, ctx: ctx, cancel: cancel, done: make(chan struct{}), started: time.Now(),
		st: model.ReplStatus{Instance: d.Name, Destination: d.Secondary, Epoch: d.Epoch}}
}

// stop asks the stream to end; it does not wait (stopAll does).
func (st *streamer) stop() { st.cancel() }

func (st *streamer) ended() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

func (st *streamer) status() model.ReplStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.st
	out.Updated = time.Now().UTC()
	return out
}

func (st *streamer) update(f func(*model.ReplStatus)) {
	st.mu.Lock()
	f(&st.st)
	st.mu.Unlock()
}

// run streams until the instance is deleted, this region is superseded, or
// the stream is stopped; failures start over after a backoff.
func (st *streamer) run(el *concurrency.Election) {
	ctx := st.ctx
	defer close(st.done)
	defer st.cancel()
	log := st.s.cfg.Log.With("instance", st.dir.Name, "destination", st.dir.Secondary)
	backoff := minBackoff
	for {
		progressed, err := st.once(ctx, el)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errDeleted), errors.Is(err, errSuperseded):
			log.Info("replication stream ended", "reason", err)
			return
		case errors.Is(err, errRebase):
			st.forceCopy = true
		}
		log.Warn("replication stream interrupted", "err", err)
		st.update(func(s *model.ReplStatus) { s.Connected, s.Error = false, err.Error() })
		st.measureDown(ctx)
		if progressed {
			backoff = minBackoff
		}
		sleep(ctx, backoff)
		backoff = min(2*backoff, maxBackoff)
	}
}

// once runs one handshake, a base copy when needed, and streams changes.
// progressed reports whether the handshake succeeded.
func (st *streamer) once(ctx context.Context, el *concurrency.Election) (progressed bool, err error) {
	ans, err := st.hello(ctx, el)
	if err != nil {
		return false, err
	}
	token := ans.Token
	if from, ok := st.resumable(ans); ok && st.notAhead(ctx, from) {
		err := st.stream(ctx, el, from, token)
		if !errors.Is(err, errRebase) {
			return true, err
		}
		if ans, err = st.hello(ctx, el); err != nil {
			return true, err
		}
		token = ans.Token
	}
	st.forceCopy = false
	rev, token, err := st.baseCopy(ctx, token)
	if err != nil {
		return true, err
	}
	return true, st.stream(ctx, el, rev, token)
}

// resumable reports whether the destination holds a complete copy of this
// stream (source, epoch) to resume from.
func (st *streamer) resumable(ans *HelloAnswer) (int64, bool) {
	s, d := ans.State, ans.Dir
	if st.forceCopy || s == nil || d == nil || s.Source != st.s.region || s.Epoch != st.dir.Epoch ||
		s.Phase != model.ReplStreaming || s.Rev <= 0 || d.Role != model.RoleSecondary || d.Epoch != st.dir.Epoch {
		return 0, false
	}
	return s.Rev, true
}

// notAhead reports whether rev is not beyond the source's revision (a
// destination ahead of its source, after a restore from a snapshot, gets a
// base copy).
func (st *streamer) notAhead(ctx context.Context, rev int64) bool {
	resp, err := st.s.cli.Get(ctx, store.DirKey(st.dir.Name), clientv3.WithCountOnly())
	return err == nil && resp.Header.Revision >= rev
}

// hello runs the handshake. A destination at a higher epoch demotes this
// region (errSuperseded once the Demoter succeeded).
func (st *streamer) hello(ctx context.Context, el *concurrency.Election) (*HelloAnswer, error) {
	var own *model.ReplState
	var mine model.ReplState
	if ok, err := st.s.cfg.Store.Get(ctx, store.ReplStateKey(st.dir.Name), &mine); err != nil {
		return nil, err
	} else if ok {
		own = &mine
	}
	h := Hello{Source: st.s.region, Epoch: st.dir.Epoch, Dir: st.full, State: own}
	var ans HelloAnswer
	if err := st.post(ctx, helloPath(st.dir.Name), &h, &ans); err != nil {
		return nil, err
	}
	if d := ans.Dir; d != nil && d.Epoch > st.dir.Epoch {
		return nil, st.demote(ctx, &ans)
	}
	st.s.contacted(ctx, el, st.dir.Secondary)
	st.update(func(s *model.ReplStatus) { s.Connected, s.Error = true, "" })
	return &ans, nil
}

func (st *streamer) demote(ctx context.Context, ans *HelloAnswer) error {
	var acked int64
	if s := ans.State; s != nil && s.Source == st.s.region && s.Epoch == st.dir.Epoch {
		acked = s.Rev
	}
	if st.s.cfg.Demoter == nil {
		return errorf("%s is at epoch %d in %s: demotion is not available", st.dir.Name, ans.Dir.Epoch, st.dir.Secondary)
	}
	st.s.cfg.Log.Warn("superseded by a newer epoch: demoting", "instance", st.dir.Name, "epoch", st.dir.Epoch,
		"new_epoch", ans.Dir.Epoch, "new_primary", ans.Dir.Primary, "acked_rev", acked)
	if err := st.s.cfg.Demoter.Demote(ctx, st.dir.Name, *ans.Dir, acked); err != nil {
		return errorf("demote %s: %w", st.dir.Name, err)
	}
	return errSuperseded
}

// post sends body to path on the secondary and decodes the answer into out.
func (st *streamer) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := st.s.cfg.Peer.Do(cctx, st.dir.Secondary, http.MethodPost, path,
		http.Header{"Content-Type": {"application/json"}}, b)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxApplyBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e apierr.Body
		json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusConflict {
			return errorf("%w: %s", ErrRefused, e.Message)
		}
		return errorf("%s answered %d: %s", st.dir.Secondary, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// baseCopy sends the instance as of the current revision R: the ID-scope
// key and the prefix, read at R in pages, in batches, the first resetting
// the destination. It returns R and the destination's token.
func (st *streamer) baseCopy(ctx context.Context, token int64) (int64, int64, error) {
	name, cli := st.dir.Name, st.s.cli
	st.update(func(s *model.ReplStatus) { s.Phase = model.ReplCopying })
	st.s.touch("get", store.DirKey(name))
	resp, err := cli.Get(ctx, store.DirKey(name))
	if err != nil {
		return 0, 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, errDeleted
	}
	var d model.DirEntry
	if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
		return 0, 0, err
	}
	if streamDir(d) != st.dir {
		return 0, 0, errorf("directory entry of %s changed", name)
	}
	rev := resp.Header.Revision
	b := &Batch{Source: st.s.region, Epoch: st.dir.Epoch, Dir: st.full, Token: token, Kind: KindCopy, Reset: true, BaseRev: rev}
	st.s.touch("get", store.ScopeKey(d.IDScope))
	sr, err := cli.Get(ctx, store.ScopeKey(d.IDScope), clientv3.WithRev(rev))
	if err != nil {
		return 0, 0, err
	}
	size := 0
	for _, kv := range sr.Kvs {
		b.Ops = append(b.Ops, Op{Key: string(kv.Key), Value: kv.Value})
	}
	prefix := store.InstancePrefix(name)
	end := clientv3.GetPrefixRangeEnd(prefix)
	st.s.touch("get", prefix)
	for key := prefix; ; {
		page, err := cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(copyPageSize))
		if err != nil {
			return 0, 0, err
		}
		for _, kv := range page.Kvs {
			if len(b.Ops) >= st.s.cfg.MaxBatchOps || size+len(kv.Value) > st.s.cfg.MaxBatchBytes && len(b.Ops) > 0 {
				if token, err = st.sendCopy(ctx, b); err != nil {
					return 0, 0, err
				}
				b = &Batch{Source: b.Source, Epoch: b.Epoch, Dir: b.Dir, Token: token, Kind: KindCopy, BaseRev: rev}
				size = 0
			}
			b.Ops = append(b.Ops, Op{Key: string(kv.Key), Value: kv.Value})
			size += len(kv.Key) + len(kv.Value)
		}
		if !page.More || len(page.Kvs) == 0 {
			break
		}
		key = string(page.Kvs[len(page.Kvs)-1].Key) + "\x00"
	}
	b.Final = true
	if token, err = st.sendCopy(ctx, b); err != nil {
		return 0, 0, err
	}
	st.update(func(s *model.ReplStatus) {
		s.Phase, s.SourceRev, s.AckedRev, s.AckedAt, s.LagMs = model.ReplStreaming, rev, rev, time.Now().UTC(), 0
	})
	return rev, token, nil
}

func (st *streamer) sendCopy(ctx context.Context, b *Batch) (int64, error) {
	b.SourceTime = time.Now().UTC()
	var ans ApplyAnswer
	if err := st.post(ctx, applyPath(b.Dir.Name), b, &ans); err != nil {
		return 0, err
	}
	return ans.Token, nil
}

// pendingRev is the changes of one source revision, as received.
type pendingRev struct {
	rev     int64
	at      time.Time // when the watch delivered it (≈ its commit)
	ops     []Op
	bytes   int
	deleted bool // the instance was deleted in this revision
}

// sent is the outcome of one batch.
type sent struct {
	ans    ApplyAnswer
	err    error
	toRev  int64
	oldest time.Time
	n      int // revisions in the batch
	del    bool
	ats    []time.Time // receive time of each revision (only with Source.acked)
}

// stream ships the changes after from, one batch in flight at a time: a
// batch is sent as soon as the previous one is acknowledged, with every
// revision received meanwhile (up to the batch limits). The watch never
// splits one revision across responses (etcd batches watch events by
// revision), so neither does a batch.
func (st *streamer) stream(ctx context.Context, el *concurrency.Election, from, token int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	name, prefix := st.dir.Name, store.InstancePrefix(st.dir.Name)
	st.s.touch("watch", prefix)
	wch := st.s.cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1))
	var (
		pending      []pendingRev
		inflight     chan sent
		flying       *sent // the batch in flight
		acked        = from
		lastContact  = time.Now()
		lastProgress = lastContact
	)
	lag := st.s.m.lag.WithLabelValues(name, st.dir.Secondary)
	tick := time.NewTicker(min(st.s.cfg.HelloInterval, 100*time.Millisecond))
	defer tick.Stop()
	send := func() {
		if inflight != nil || len(pending) == 0 {
			return
		}
		b, info := st.batch(pending, acked, token)
		pending = pending[info.n:]
		flying, inflight = info, make(chan sent, 1)
		ch := inflight
		go func() {
			var ans ApplyAnswer
			err := st.post(ctx, applyPath(name), b, &ans)
			out := *info
			out.ans, out.err = ans, err
			ch <- out
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-wch:
			if !ok {
				return errorf("watch of %s closed", name)
			}
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				return errRebase
			}
			if err := wr.Err(); err != nil {
				return err
			}
			pending = appendEvents(pending, wr.Events, time.Now(), store.ConfKey(name))
			if wr.IsProgressNotify() && len(pending) == 0 && inflight == nil && wr.Header.Revision > acked {
				// Nothing changed up to that revision: move the destination
				// there, so that a restart after a compaction resumes.
				pending = append(pending, pendingRev{rev: wr.Header.Revision, at: time.Now()})
			}
			send()
			if len(pending) > maxPendingRevs {
				// The destination applies slower than the source writes:
				// drop the backlog and read it again from etcd's history
				// (the next handshake resumes at the acknowledged revision).
				return errorf("%d revisions of %s wait for the destination", len(pending), name)
			}
		case res := <-inflight:
			inflight, flying = nil, nil
			if res.err != nil {
				return res.err
			}
			acked, token, lastContact = res.toRev, res.ans.Token, time.Now()
			d := time.Since(res.oldest)
			st.s.m.batchLag.WithLabelValues(st.s.region, st.dir.Secondary).Observe(d.Seconds())
			st.update(func(s *model.ReplStatus) {
				s.AckedRev, s.AckedAt, s.LastLagMs = acked, time.Now().UTC(), float64(d.Microseconds())/1000
			})
			if st.s.acked != nil {
				st.s.acked(res.ats)
			}
			if res.del {
				return errDeleted
			}
			send()
		case <-tick.C:
			if inflight == nil && len(pending) == 0 && time.Since(lastContact) >= st.s.cfg.HelloInterval {
				ans, err := st.hello(ctx, el)
				if err != nil {
					return err
				}
				if ans.Token != token || ans.State == nil || ans.State.Rev != acked {
					return errorf("the destination's state of %s moved", name)
				}
				lastContact = time.Now()
				if time.Since(lastProgress) >= st.s.progressEvery {
					lastProgress = lastContact
					st.s.cli.RequestProgress(ctx)
				}
			}
		}
		st.measure(lag, pending, flying, acked)
	}
}

// measure sets the lag gauge and the status: the age of the oldest change
// not acknowledged, 0 when caught up.
func (st *streamer) measure(g interface{ Set(float64) }, pending []pendingRev, flying *sent, acked int64) {
	var oldest time.Time
	srcRev := acked
	if flying != nil {
		oldest, srcRev = flying.oldest, flying.toRev
	}
	if len(pending) > 0 {
		if oldest.IsZero() {
			oldest = pending[0].at
		}
		srcRev = pending[len(pending)-1].rev
	}
	var lag time.Duration
	if !oldest.IsZero() {
		lag = time.Since(oldest)
	}
	g.Set(lag.Seconds())
	st.update(func(s *model.ReplStatus) {
		s.Phase, s.SourceRev, s.AckedRev, s.LagMs = model.ReplStreaming, srcRev, acked, float64(lag.Microseconds())/1000
	})
}

// measureDown sets the lag while the stream is down: the time since the
// last acknowledgement (since the stream started, before any) once the
// source has moved past the acknowledged revision, an upper bound of the
// oldest change's age. It reads one key, never the instance's range: the
// failover benchmark found a revision-sorted read of the whole prefix here
// (0.3-0.6 s at 200,000 keys) slowing the first registrations of a freshly
// promoted primary whose old region is down. The source's revision is the
// store's, so any write in the region counts as a change: the bound errs
// towards reporting lag, which is what an operator wants to see while a
// destination is unreachable.
func (st *streamer) measureDown(ctx context.Context) {
	key := store.ConfKey(st.dir.Name)
	st.s.touch("get", key)
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := st.s.cli.Get(cctx, key, clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	latest := resp.Header.Revision
	st.mu.Lock()
	defer st.mu.Unlock()
	since := st.st.AckedAt
	if since.IsZero() {
		since = st.started
	}
	var lag time.Duration
	if st.st.AckedRev == 0 || latest > st.st.AckedRev {
		lag = time.Since(since)
	}
	st.st.LagMs = float64(lag.Microseconds()) / 1000
	st.s.m.lag.WithLabelValues(st.dir.Name, st.dir.Secondary).Set(lag.Seconds())
}

// appendEvents groups watch events by revision. A deletion of the
// instance's configuration is the deletion of the instance (store
// DeleteInstance): the revision becomes one instance deletion.
func appendEvents(pending []pendingRev, evs []*clientv3.Event, at time.Time, confKey string) []pendingRev {
	for _, ev := range evs {
		rev := ev.Kv.ModRevision
		if len(pending) == 0 || pending[len(pending)-1].rev != rev {
			pending = append(pending, pendingRev{rev: rev, at: at})
		}
		p := &pending[len(pending)-1]
		op := Op{Rev: rev, Key: string(ev.Kv.Key)}
		if ev.Type == clientv3.EventTypeDelete {
			op.Delete = true
			if op.Key == confKey {
				p.deleted = true
			}
		} else {
			op.Value = ev.Kv.Value
		}
		p.ops = append(p.ops, op)
		p.bytes += len(op.Key) + len(op.Value)
	}
	return pending
}

// batch takes whole revisions from pending, at least one, up to the
// limits, and stops after an instance deletion.
func (st *streamer) batch(pending []pendingRev, acked, token int64) (*Batch, *sent) {
	b := &Batch{Source: st.s.region, Epoch: st.dir.Epoch, Dir: st.full, Token: token, Kind: KindChanges, FromRev: acked}
	info := &sent{oldest: pending[0].at}
	size := 0
	for _, p := range pending {
		if info.n > 0 && (len(b.Ops)+len(p.ops) > st.s.cfg.MaxBatchOps || size+p.bytes > st.s.cfg.MaxBatchBytes) {
			break
		}
		info.n++
		b.ToRev, b.SourceTime = p.rev, p.at.UTC()
		if st.s.acked != nil {
			info.ats = append(info.ats, p.at)
		}
		if p.deleted {
			b.Ops = append(b.Ops, Op{Rev: p.rev, Key: store.DirKey(st.dir.Name), Delete: true})
			info.del = true
			break
		}
		b.Ops = append(b.Ops, p.ops...)
		size += p.bytes
	}
	info.toRev = b.ToRev
	return b, info
}
