package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// historySeq numbers history watches.
var historySeq atomic.Uint64

// Bounds of a lost-writes report, which is one etcd value (the request
// limit is 1.5 MiB): values are kept while the report stays under
// reportValueBudget, keys while it stays under reportBudget; a report cut
// there says Complete=false.
const (
	reportValueBudget = 768 << 10
	reportBudget      = 1 << 20
	// historyTimeout bounds the reading of an instance's history.
	historyTimeout = 30 * time.Second
	// progressEvery is how often a history watch asks whether it caught up.
	progressEvery = 20 * time.Millisecond
)

// Demote makes this region, an old primary of instance superseded by
// newDir (a newer epoch whose primary is another region), a secondary:
//
//  1. if the instance is still primary here it is fenced first, so no
//     write commits while the report is made;
//  2. the lost writes, every change to the instance's prefix, ID-scope key
//     and directory entry (except the fence and unfence role changes, which
//     are not the tenant's) after ackedRev, the last revision of this
//     region the new primary acknowledged, are read from etcd history,
//     deletions included (Complete=true); when that history was compacted,
//     the keys still present with a newer mod revision (Complete=false);
//  3. one transaction, compared on the fenced entry, stores the report at
//     store.LostWritesKey(instance, newDir.Epoch) and sets the entry to
//     newDir with role secondary.
//
// A report is stored even with no writes: it records that the demotion
// happened and from which revision. Demote is idempotent: an entry already
// at newDir.Epoch as secondary is left alone (and its report kept). An
// entry here at a newer epoch refuses (ErrRefused); a region that was not
// primary for the instance is only re-pointed at the new primary, without
// a report. The replicator calls it through an interface; it is safe for
// concurrent use.
func (m *Manager) Demote(ctx context.Context, instance string, newDir model.DirEntry, ackedRev int64) error {
	if newDir.Name == "" {
		newDir.Name = instance
	}
	if newDir.Name != instance || newDir.Primary == "" || newDir.Primary == m.cfg.Region || newDir.Epoch == 0 {
		return fmt.Errorf("%w: demote %s to %+v", ErrInvalid, instance, newDir)
	}
	newDir.Role = model.RoleSecondary
	for range 5 {
		e, err := m.dir(ctx, instance)
		if err != nil {
			return err
		}
		done, err := m.demoteOnce(ctx, e, newDir, ackedRev)
		if done || err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: the directory entry of %s keeps changing", ErrUnavailable, instance)
}

// demoteOnce tries once from e; done is false when e changed under it.
func (m *Manager) demoteOnce(ctx context.Context, e *entry, newDir model.DirEntry, ackedRev int64) (done bool, err error) {
	key := store.DirKey(newDir.Name)
	b, err := json.Marshal(newDir)
	if err != nil {
		return false, err
	}
	switch {
	case e == nil: // unknown here: let the new primary's stream in
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		resp, err := m.kv.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return false, unavailable(err)
		}
		return resp.Succeeded, nil
	case e.d.Epoch > newDir.Epoch:
		return true, refused("instance %s is at epoch %d here, newer than %d", e.d.Name, e.d.Epoch, newDir.Epoch)
	case e.d.Epoch == newDir.Epoch && e.d.Role == model.RoleSecondary:
		return true, nil // demoted before
	case e.d.Primary != m.cfg.Region: // a secondary here: nothing was written here
		_, ok, err := m.swap(ctx, e, newDir)
		return ok, err
	case e.d.Role == model.RolePrimary:
		d := e.d
		d.Role = model.RoleFenced
		_, ok, err := m.swap(ctx, e, d)
		if err != nil || !ok {
			return false, err
		}
		m.log.Info("instance fenced for its demotion", "instance", d.Name, "epoch", d.Epoch)
		return false, nil // read the fenced entry again
	}
	lost, err := m.lostWrites(ctx, e, newDir, ackedRev)
	if err != nil {
		return false, err
	}
	rb, err := json.Marshal(lost)
	if err != nil {
		return false, err
	}
	if _, ok, err := m.swap(ctx, e, newDir, clientv3.OpPut(store.LostWritesKey(newDir.Name, newDir.Epoch), string(rb))); err != nil || !ok {
		return false, err
	}
	m.log.Warn("instance demoted: a newer epoch has another primary", "instance", newDir.Name, "old_epoch", e.d.Epoch,
		"new_epoch", newDir.Epoch, "new_primary", newDir.Primary, "acked_rev", ackedRev, "lost_writes", len(lost.Writes), "complete", lost.Complete)
	return true, nil
}

// lostWrites makes the report of the writes of e's instance after
// ackedRev. e is fenced: nothing is written to the instance any more.
func (m *Manager) lostWrites(ctx context.Context, e *entry, newDir model.DirEntry, ackedRev int64) (*model.LostWrites, error) {
	lw := &model.LostWrites{Instance: e.d.Name, Region: m.cfg.Region, OldEpoch: e.d.Epoch, NewEpoch: newDir.Epoch,
		NewPrimary: newDir.Primary, AckedRev: ackedRev, DetectedAt: m.now().UTC(), Writes: []model.LostWrite{}, Complete: true}
	hctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	evs, err := m.changes(hctx, e.d, ackedRev)
	if errors.Is(err, rpctypes.ErrCompacted) {
		lw.Complete = false
		evs, err = m.present(hctx, e.d, ackedRev)
	}
	if err != nil {
		return nil, err
	}
	size := 0
	for _, w := range evs {
		if size += len(w.Key) + 48; size > reportBudget {
			lw.Complete = false
			break
		}
		if size+len(w.Value) <= reportValueBudget {
			size += len(w.Value)
		} else {
			w.Value = ""
		}
		lw.Writes = append(lw.Writes, w)
	}
	return lw, nil
}

// watched are the keys of an instance's history: its prefix, its ID-scope
// key and its directory entry (prefix: whether the key is a prefix).
func watched(d model.DirEntry) []struct {
	key    string
	prefix bool
} {
	return []struct {
		key    string
		prefix bool
	}{{store.InstancePrefix(d.Name), true}, {store.ScopeKey(d.IDScope), false}, {store.DirKey(d.Name), false}}
}

// changes reads from etcd history every change to d's keys after ackedRev,
// in revision order; rpctypes.ErrCompacted when that history is gone.
func (m *Manager) changes(ctx context.Context, d model.DirEntry, ackedRev int64) ([]model.LostWrite, error) {
	resp, err := m.kv.Get(ctx, store.DirKey(d.Name))
	if err != nil {
		return nil, unavailable(err)
	}
	until := resp.Header.Revision
	if ackedRev >= until {
		return nil, nil
	}
	// A cheap probe: a read at ackedRev+1 fails when it was compacted.
	if _, err := m.kv.Get(ctx, store.DirKey(d.Name), clientv3.WithRev(ackedRev+1), clientv3.WithKeysOnly()); err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, err
		}
		return nil, unavailable(err)
	}
	var out []model.LostWrite
	for _, w := range watched(d) {
		evs, err := m.history(ctx, w.key, w.prefix, ackedRev+1, until)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			lw := model.LostWrite{Key: string(ev.Kv.Key), Rev: ev.Kv.ModRevision, Deleted: ev.Type == clientv3.EventTypeDelete}
			if !lw.Deleted {
				lw.Value = string(ev.Kv.Value)
			}
			if isRoleChange(lw, d) {
				continue
			}
			out = append(out, lw)
		}
	}
	sortWrites(out)
	return out, nil
}

// isRoleChange reports whether w is a put of d's directory entry at d's
// epoch: a fence or unfence, not a write of the tenant.
func isRoleChange(w model.LostWrite, d model.DirEntry) bool {
	if w.Deleted || w.Key != store.DirKey(d.Name) {
		return false
	}
	var e model.DirEntry
	return json.Unmarshal([]byte(w.Value), &e) == nil && e.Epoch == d.Epoch
}

func sortWrites(ws []model.LostWrite) {
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].Rev != ws[j].Rev {
			return ws[i].Rev < ws[j].Rev
		}
		return ws[i].Key < ws[j].Key
	})
}

// history returns the events of key (a prefix when prefix) from revision
// from to until, by a watch that starts in the past and ends once etcd
// says it caught up (a progress notification at until or later).
func (m *Manager) history(ctx context.Context, key string, prefix bool, from, until int64) ([]*clientv3.Event, error) {
	// Its own watch stream (streams are keyed by the outgoing metadata), so
	// that progress requests concern this watch only; it ends with ctx.
	w := m.client.Watcher
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(metadata.AppendToOutgoingContext(ctx,
		"opendps-dr-history", strconv.FormatUint(historySeq.Add(1), 10))))
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(from)}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	ch := w.Watch(ctx, key, opts...) // RequestProgress needs the same ctx: same stream
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	var out []*clientv3.Event
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return nil, unavailable(fmt.Errorf("history watch of %s closed: %v", key, ctx.Err()))
			}
			if resp.CompactRevision != 0 {
				return nil, rpctypes.ErrCompacted
			}
			if err := resp.Err(); err != nil {
				return nil, unavailable(err)
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > until {
					return out, nil
				}
				out = append(out, ev)
			}
			if resp.IsProgressNotify() && resp.Header.Revision >= until {
				return out, nil
			}
		case <-tick.C:
			w.RequestProgress(ctx)
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		}
	}
}

// present is the fallback of changes after a compaction: the keys of d
// still present whose mod revision is after ackedRev (deletions are
// unknown).
func (m *Manager) present(ctx context.Context, d model.DirEntry, ackedRev int64) ([]model.LostWrite, error) {
	var out []model.LostWrite
	for _, w := range watched(d) {
		opts := []clientv3.OpOption{clientv3.WithMinModRev(ackedRev + 1)}
		if w.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		resp, err := m.kv.Get(ctx, w.key, opts...)
		if err != nil {
			return nil, unavailable(err)
		}
		for _, kv := range resp.Kvs {
			lw := model.LostWrite{Key: string(kv.Key), Rev: kv.ModRevision, Value: string(kv.Value)}
			if !isRoleChange(lw, d) {
				out = append(out, lw)
			}
		}
	}
	sortWrites(out)
	return out, nil
}

// LostWrites lists the lost-writes reports kept in this region, of
// instance or ("") of every instance, by instance and new epoch.
func (m *Manager) LostWrites(ctx context.Context, instance string) ([]model.LostWrites, error) {
	prefix := store.LostWritesPrefix()
	if instance != "" {
		prefix += instance + "/"
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := m.kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]model.LostWrites, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var lw model.LostWrites
		if err := json.Unmarshal(kv.Value, &lw); err != nil {
			return nil, fmt.Errorf("dr: lost-writes report %s: %w", kv.Key, err)
		}
		out = append(out, lw)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Instance != out[j].Instance {
			return out[i].Instance < out[j].Instance
		}
		return out[i].NewEpoch < out[j].NewEpoch
	})
	return out, nil
}

// DeleteLostWrites removes the report of instance superseded at newEpoch
// (ErrNotFound when there is none), once an operator dealt with it.
func (m *Manager) DeleteLostWrites(ctx context.Context, instance string, newEpoch uint64) error {
	if instance == "" || strings.Contains(instance, "/") {
		return fmt.Errorf("%w: instance name %q", ErrInvalid, instance)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := m.kv.Delete(ctx, store.LostWritesKey(instance, newEpoch))
	if err != nil {
		return unavailable(err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%w: no lost-writes report of %s at epoch %s", ErrNotFound, instance, strconv.FormatUint(newEpoch, 10))
	}
	return nil
}
