package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Destination limits. A source batch holds at most DefaultMaxBatchOps
// operations, and never splits a source revision; a batch larger than
// SinkConfig.MaxTxnOps (an external etcd's 128) is applied in several
// transactions cut at revision boundaries.
const (
	maxApplyBody   = 8 << 20
	sinkTimeout    = 10 * time.Second
	sinkExtraOps   = 6 // dir, state, old scope, prefix delete...
	defaultTxnOps  = 1000
	copyPhaseStart = 0 // ReplState.Rev while a base copy is under way
)

// SinkConfig configures the destination side.
type SinkConfig struct {
	// Store is the region's store. Required.
	Store *store.Store
	// Region is this region. Required.
	Region string
	// Demoter demotes an instance primary here when its new primary's
	// stream arrives with a higher epoch. Nil: such a hello is refused
	// (503) until one is wired.
	Demoter Demoter
	// MaxTxnOps bounds the operations of one transaction (0: 1000).
	MaxTxnOps int
	Log       *slog.Logger
}

// Sink applies batches from source regions. It is safe for concurrent use.
type Sink struct {
	cfg SinkConfig
	cli *clientv3.Client
	m   *metrics
}

// NewSink returns the destination side.
func NewSink(cfg SinkConfig) (*Sink, error) {
	if cfg.Store == nil || cfg.Region == "" {
		return nil, errors.New("replicate: sink config: Store and Region are required")
	}
	if cfg.MaxTxnOps <= sinkExtraOps {
		cfg.MaxTxnOps = defaultTxnOps
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Sink{cfg: cfg, cli: cfg.Store.Client(), m: defaultMetrics()}, nil
}

// Mount registers the sink's endpoints on the peer listener's mux.
func (s *Sink) Mount(mux *http.ServeMux) {
	mux.Handle(PatternHello, apierr.Handler(s.cfg.Log, s.serveHello))
	mux.Handle(PatternApply, apierr.Handler(s.cfg.Log, s.serveApply))
}

func refuse(format string, args ...any) error {
	e := apierr.New(apierr.CodeConflict, format, args...)
	e.Cause = ErrRefused
	return e
}

func (s *Sink) serveHello(w http.ResponseWriter, r *http.Request) error {
	var h Hello
	if err := apierr.DecodeJSON(r, maxApplyBody, &h, true); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), sinkTimeout)
	defer cancel()
	ans, err := s.Hello(ctx, peer.RegionOf(r), r.PathValue("instance"), &h)
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, ans)
}

func (s *Sink) serveApply(w http.ResponseWriter, r *http.Request) error {
	var b Batch
	if err := apierr.DecodeJSON(r, maxApplyBody, &b, true); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), sinkTimeout)
	defer cancel()
	ans, err := s.Apply(ctx, peer.RegionOf(r), r.PathValue("instance"), &b)
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, ans)
}

// checkCaller refuses a stream whose entry does not name caller as
// primary and this region as secondary.
func (s *Sink) checkCaller(caller, instance, source string, d *model.DirEntry) error {
	switch {
	case caller == "":
		return apierr.New(apierr.CodeUnauthorized, "No region certificate.")
	case source != caller || d.Primary != caller:
		return refuse("Region %s may not replicate %s as %s (primary %s).", caller, instance, source, d.Primary)
	case d.Name != instance || !d.DREnabled || d.Secondary != s.cfg.Region:
		return refuse("Instance %s does not replicate to %s.", instance, s.cfg.Region)
	}
	return nil
}

// local is the destination's state of an instance.
type local struct {
	dir    *model.DirEntry
	dirRaw []byte
	state  *model.ReplState
	token  int64 // mod revision of the ReplState (0: none)
}

func (s *Sink) read(ctx context.Context, instance string) (*local, error) {
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(store.DirKey(instance)), clientv3.OpGet(store.ReplStateKey(instance))).Commit()
	if err != nil {
		return nil, unavailable(err)
	}
	l := &local{}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		l.dirRaw = kvs[0].Value
		l.dir = &model.DirEntry{}
		if err := json.Unmarshal(kvs[0].Value, l.dir); err != nil {
			return nil, err
		}
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		l.token = kvs[0].ModRevision
		l.state = &model.ReplState{}
		if err := json.Unmarshal(kvs[0].Value, l.state); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func unavailable(err error) error {
	return apierr.Wrap(fmt.Errorf("%w: %v", store.ErrUnavailable, err), apierr.CodeUnavailable, "Storage unavailable.")
}

// Hello answers a source's handshake. When this region still holds the
// instance as primary or fenced and the caller comes with a higher epoch,
// this region was failed over: the Demoter runs first.
func (s *Sink) Hello(ctx context.Context, caller, instance string, h *Hello) (*HelloAnswer, error) {
	if err := s.checkCaller(caller, instance, h.Source, &h.Dir); err != nil {
		return nil, err
	}
	if h.Epoch != h.Dir.Epoch {
		return nil, apierr.New(apierr.CodeBadArgument, "Epoch %d differs from the entry's %d.", h.Epoch, h.Dir.Epoch)
	}
	l, err := s.read(ctx, instance)
	if err != nil {
		return nil, err
	}
	if d := l.dir; d != nil && d.Role != model.RoleSecondary {
		switch {
		case d.Epoch > h.Epoch: // the caller was superseded: it learns it from the answer
		case d.Epoch == h.Epoch:
			return nil, refuse("Instance %s is %s in %s at epoch %d too.", instance, d.Role, s.cfg.Region, d.Epoch)
		case d.Secondary != caller:
			return nil, refuse("Instance %s is %s in %s and replicates to %s, not %s.", instance, d.Role, s.cfg.Region, d.Secondary, caller)
		default:
			if err := s.demote(ctx, l, h); err != nil {
				return nil, err
			}
			if l, err = s.read(ctx, instance); err != nil {
				return nil, err
			}
		}
	}
	return &HelloAnswer{Region: s.cfg.Region, Dir: l.dir, State: l.state, Token: l.token}, nil
}

// demote hands an instance primary here to the Demoter: the caller holds a
// newer epoch.
func (s *Sink) demote(ctx context.Context, l *local, h *Hello) error {
	if s.cfg.Demoter == nil {
		return apierr.New(apierr.CodeUnavailable, "Instance %s must be demoted first; demotion is not available.", h.Dir.Name)
	}
	var acked int64
	if st := h.State; st != nil && st.Source == s.cfg.Region && st.Epoch == l.dir.Epoch {
		acked = st.Rev
	}
	s.cfg.Log.Warn("newer epoch from the peer: demoting", "instance", h.Dir.Name, "epoch", l.dir.Epoch,
		"new_epoch", h.Epoch, "new_primary", h.Dir.Primary, "acked_rev", acked)
	if err := s.cfg.Demoter.Demote(ctx, h.Dir.Name, h.Dir, acked); err != nil {
		return apierr.Wrap(err, apierr.CodeUnavailable, "Demotion of %s failed.", h.Dir.Name)
	}
	return nil
}

// Apply applies one batch from caller.
func (s *Sink) Apply(ctx context.Context, caller, instance string, b *Batch) (*ApplyAnswer, error) {
	if err := s.checkCaller(caller, instance, b.Source, &b.Dir); err != nil {
		return nil, err
	}
	if err := s.checkOps(instance, b); err != nil {
		return nil, err
	}
	l, err := s.read(ctx, instance)
	if err != nil {
		return nil, err
	}
	if err := s.admit(l, caller, b); err != nil {
		return nil, err
	}
	return s.commit(ctx, l, b)
}

// checkOps refuses a batch that writes outside the instance.
func (s *Sink) checkOps(instance string, b *Batch) error {
	if b.Epoch != b.Dir.Epoch || (b.Kind != KindCopy && b.Kind != KindChanges) {
		return apierr.New(apierr.CodeBadArgument, "Malformed batch.")
	}
	if b.Kind == KindChanges && (b.ToRev < b.FromRev || b.FromRev <= 0) {
		return apierr.New(apierr.CodeBadArgument, "Malformed revision range %d..%d.", b.FromRev, b.ToRev)
	}
	prefix := store.InstancePrefix(instance)
	for _, op := range b.Ops {
		ok := strings.HasPrefix(op.Key, prefix) ||
			(op.Key == store.ScopeKey(b.Dir.IDScope) && !op.Delete) ||
			(op.Key == store.DirKey(instance) && op.Delete && b.Kind == KindChanges)
		if !ok {
			return refuse("Key %q is outside instance %s.", op.Key, instance)
		}
	}
	return nil
}

// admit decides whether b may apply on l: the entry here must be
// secondary of the caller at b's epoch, or absent or older for a base copy
// that resets; the ReplState must be the one the source last saw (token)
// and where b starts.
func (s *Sink) admit(l *local, caller string, b *Batch) error {
	d := l.dir
	switch {
	case d == nil && !b.Reset:
		return refuse("Instance %s is not here: a base copy must start with a reset.", b.Dir.Name)
	case d == nil:
	case d.Role != model.RoleSecondary:
		return refuse("Instance %s is %s in %s (epoch %d): it takes no replication.", d.Name, d.Role, s.cfg.Region, d.Epoch)
	case d.Epoch == b.Epoch && d.Primary == caller:
	case d.Epoch < b.Epoch && b.Reset && (d.Primary == caller || d.Secondary == caller):
		// A newer epoch of the pair: a failover or a failback.
	default:
		return refuse("Instance %s is secondary of %s at epoch %d here, not of %s at epoch %d.", d.Name, d.Primary, d.Epoch, caller, b.Epoch)
	}
	if l.token != b.Token {
		return refuse("Stale batch for %s: the replication state moved (token %d, have %d).", b.Dir.Name, b.Token, l.token)
	}
	if b.Reset {
		return nil
	}
	st := l.state
	if st == nil || st.Source != caller || st.Epoch != b.Epoch {
		return refuse("No stream of %s from %s at epoch %d here.", b.Dir.Name, caller, b.Epoch)
	}
	switch b.Kind {
	case KindCopy:
		if st.Phase != model.ReplCopying || st.BaseRev != b.BaseRev {
			return refuse("No base copy of %s at revision %d under way.", b.Dir.Name, b.BaseRev)
		}
	case KindChanges:
		if st.Phase != model.ReplStreaming || st.Rev != b.FromRev {
			return refuse("Instance %s is at revision %d (%s), not %d.", b.Dir.Name, st.Rev, st.Phase, b.FromRev)
		}
	}
	return nil
}

// commit applies b in one transaction, or in several cut at revision
// boundaries when it exceeds MaxTxnOps.
func (s *Sink) commit(ctx context.Context, l *local, b *Batch) (*ApplyAnswer, error) {
	chunks := splitOps(b.Ops, s.cfg.MaxTxnOps-sinkExtraOps, b.Kind == KindChanges)
	if b.Reset {
		chunks = append([][]Op{nil}, chunks...)
	}
	dirRaw, token := l.dirRaw, l.token
	var st model.ReplState
	for i, ops := range chunks {
		last := i == len(chunks)-1
		st = s.nextState(l.state, b, ops, last)
		reset := b.Reset && i == 0
		newDirRaw, rev, deleted, err := s.commitChunk(ctx, l, dirRaw, token, b, ops, &st, reset)
		if err != nil {
			return nil, err
		}
		s.m.applied.WithLabelValues(b.Source).Add(float64(len(ops)))
		if deleted {
			return &ApplyAnswer{State: st, Token: 0}, nil
		}
		dirRaw, token = newDirRaw, rev
	}
	return &ApplyAnswer{State: st, Token: token}, nil
}

// nextState is the ReplState after ops of b.
func (s *Sink) nextState(prev *model.ReplState, b *Batch, ops []Op, last bool) model.ReplState {
	st := model.ReplState{Instance: b.Dir.Name, Source: b.Source, Epoch: b.Epoch, SourceTime: b.SourceTime, AppliedAt: time.Now().UTC()}
	switch {
	case b.Kind == KindCopy && b.Final && last:
		st.Phase, st.BaseRev, st.Rev = model.ReplStreaming, b.BaseRev, b.BaseRev
	case b.Kind == KindCopy:
		st.Phase, st.BaseRev, st.Rev = model.ReplCopying, b.BaseRev, copyPhaseStart
	default:
		st.Phase, st.BaseRev, st.Rev = model.ReplStreaming, prev.BaseRev, b.ToRev
		if !last && len(ops) > 0 {
			st.Rev = ops[len(ops)-1].Rev
		}
	}
	return st
}

// commitChunk runs one transaction: compare the entry and the ReplState,
// put the ops, the entry (role secondary) and the new ReplState.
func (s *Sink) commitChunk(ctx context.Context, l *local, dirRaw []byte, token int64, b *Batch, ops []Op,
	st *model.ReplState, reset bool) (newDir []byte, rev int64, deleted bool, err error) {
	name := b.Dir.Name
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(store.ReplStateKey(name)), "=", token)}
	if dirRaw == nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(store.DirKey(name)), "=", 0))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.Value(store.DirKey(name)), "=", string(dirRaw)))
	}
	want := b.Dir
	want.Role = model.RoleSecondary
	wantRaw, err := json.Marshal(want)
	if err != nil {
		return nil, 0, false, err
	}
	var then []clientv3.Op
	if string(wantRaw) != string(dirRaw) {
		then = append(then, clientv3.OpPut(store.DirKey(name), string(wantRaw)))
	}
	if reset {
		// etcd takes no put inside a range deleted by the same
		// transaction: the reset is a transaction of its own, which
		// leaves the copy empty in phase copying.
		then = append(then, clientv3.OpDelete(store.InstancePrefix(name), clientv3.WithPrefix()))
		if l.dir != nil && l.dir.IDScope != b.Dir.IDScope {
			then = append(then, clientv3.OpDelete(store.ScopeKey(l.dir.IDScope)))
		}
		ops = nil
	}
	seen := map[string]bool{} // etcd takes one operation per key: the last wins
	for i := len(ops) - 1; i >= 0; i-- {
		op := ops[i]
		switch {
		case op.Key == store.DirKey(name): // the instance was deleted at the source
			deleted = true
		case seen[op.Key]:
		case op.Delete:
			then = append(then, clientv3.OpDelete(op.Key))
		default:
			then = append(then, clientv3.OpPut(op.Key, string(op.Value)))
		}
		seen[op.Key] = true
	}
	if deleted {
		then = []clientv3.Op{clientv3.OpDelete(store.InstancePrefix(name), clientv3.WithPrefix()),
			clientv3.OpDelete(store.ScopeKey(b.Dir.IDScope)), clientv3.OpDelete(store.DirKey(name)),
			clientv3.OpDelete(store.ReplStateKey(name))}
		if l.dir != nil && l.dir.IDScope != b.Dir.IDScope {
			then = append(then, clientv3.OpDelete(store.ScopeKey(l.dir.IDScope)))
		}
	} else {
		stRaw, err := json.Marshal(st)
		if err != nil {
			return nil, 0, false, err
		}
		then = append(then, clientv3.OpPut(store.ReplStateKey(name), string(stRaw)))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Commit()
	if err != nil {
		return nil, 0, false, unavailable(err)
	}
	if !resp.Succeeded {
		return nil, 0, false, refuse("Instance %s changed here while the batch applied.", name)
	}
	return wantRaw, resp.Header.Revision, deleted, nil
}

// splitOps cuts ops into chunks of at most max operations; with atRevs, only
// between two source revisions (a revision larger than max stays whole).
func splitOps(ops []Op, max int, atRevs bool) [][]Op {
	if len(ops) <= max {
		return [][]Op{ops}
	}
	var out [][]Op
	start := 0
	for start < len(ops) {
		end := min(start+max, len(ops))
		if atRevs && end < len(ops) {
			cut := end
			for cut > start && ops[cut].Rev == ops[cut-1].Rev {
				cut--
			}
			if cut == start { // one revision larger than max: keep it whole
				for cut = end; cut < len(ops) && ops[cut].Rev == ops[cut-1].Rev; cut++ {
				}
			}
			end = cut
		}
		out = append(out, ops[start:end])
		start = end
	}
	return out
}
