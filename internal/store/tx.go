package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opendps/opendps/internal/model"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxAttempts bounds optimistic retries of Update under contention.
const maxAttempts = 8

// Tx is an optimistic transaction on one instance. Reads record the
// revision seen; the commit compares them, plus the instance's directory
// entry, and applies the writes atomically. A Tx is used by one goroutine.
type Tx struct {
	s       *Store
	ctx     context.Context
	dir     *model.DirEntry
	dirRaw  []byte
	reads   map[string]int64  // key -> mod revision seen (0: absent)
	seeded  map[string][]byte // values read before the transaction (Seed)
	writes  map[string][]byte
	deletes map[string]bool
	order   []string
}

// Dir returns the instance's directory entry as of the transaction start.
func (tx *Tx) Dir() *model.DirEntry { return tx.dir }

// Get reads key into v and reports whether it exists; the transaction
// commits only if key is unchanged.
func (tx *Tx) Get(key string, v any) (bool, error) {
	if b, ok := tx.writes[key]; ok {
		return true, json.Unmarshal(b, v)
	}
	if tx.deletes[key] {
		return false, nil
	}
	if raw, ok := tx.seeded[key]; ok {
		if raw == nil {
			return false, nil
		}
		return true, json.Unmarshal(raw, v)
	}
	resp, err := tx.s.get(tx.ctx, key)
	if err != nil {
		return false, wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		tx.reads[key] = 0
		return false, nil
	}
	tx.reads[key] = resp.Kvs[0].ModRevision
	return true, json.Unmarshal(resp.Kvs[0].Value, v)
}

// Seed records that key was read before the transaction, at mod revision
// rev (0: absent) with value raw (nil: absent): Get returns it without a
// round trip and the commit compares rev, so a decision taken on that read
// cannot commit if the key changed since.
func (tx *Tx) Seed(key string, rev int64, raw []byte) {
	if tx.seeded == nil {
		tx.seeded = map[string][]byte{}
	}
	tx.seeded[key] = raw
	tx.reads[key] = rev
}

// Put writes v (JSON) at key on commit.
func (tx *Tx) Put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	delete(tx.deletes, key)
	if _, ok := tx.writes[key]; !ok {
		tx.order = append(tx.order, key)
	}
	tx.writes[key] = b
	return nil
}

// Delete removes key on commit.
func (tx *Tx) Delete(key string) {
	delete(tx.writes, key)
	tx.deletes[key] = true
	tx.order = append(tx.order, key)
}

// Update runs fn in a fenced optimistic transaction on instance and
// commits its writes. fn may run several times under contention; it must
// not have side effects beyond the Tx. An instance whose directory entry
// does not make this region its writable primary gives ErrFenced; a missing
// instance gives ErrNotFound. Errors returned by fn abort and are returned.
//
// A commit that provably did not apply (no leader, proposal dropped) is
// retried within the request's attempts; one that may have applied (a
// timeout on a dead leader) is not, and gives ErrIndeterminate (wrapped
// with ErrUnavailable): see retry.go.
func (s *Store) Update(ctx context.Context, instance string, fn func(*Tx) error) error {
	return s.update(ctx, instance, fn, false)
}

// UpdateIdempotent is Update for functions whose outcome does not depend
// on whether an earlier, indeterminate commit of theirs applied: such a
// commit is retried too, by running fn again on fresh reads (which see the
// earlier write if it applied). The registration write is one: it
// re-decides on the registration record it reads.
func (s *Store) UpdateIdempotent(ctx context.Context, instance string, fn func(*Tx) error) error {
	return s.update(ctx, instance, fn, true)
}

func (s *Store) update(ctx context.Context, instance string, fn func(*Tx) error, idempotent bool) error {
	failed := 0 // commits that failed (rather than lost a comparison)
	backoff := retryBackoff
	for range maxAttempts {
		tx, err := s.begin(ctx, instance)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		ok, err := tx.commit()
		switch {
		case err == nil && ok:
			return nil
		case err == nil: // lost a comparison: run fn again
			continue
		}
		failed++
		retry := notApplied(err) || idempotent
		if !retry || failed >= s.attempts || ctx.Err() != nil {
			if notApplied(err) {
				return wrapErr(err)
			}
			return indeterminate(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return indeterminate(err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
	return ErrConflict
}

func (s *Store) begin(ctx context.Context, instance string) (*Tx, error) {
	d, raw, err := s.primaryEntry(ctx, instance)
	if err != nil {
		return nil, err
	}
	if gate := s.writeGate.Load(); gate != nil {
		if err := (*gate)(ctx, d); err != nil {
			return nil, err
		}
	}
	return &Tx{s: s, ctx: ctx, dir: d, dirRaw: raw,
		reads: map[string]int64{}, writes: map[string][]byte{}, deletes: map[string]bool{}}, nil
}

// SetWriteGate installs gate, which every write to an instance consults
// after the fence check and which may refuse it (the DR start gate,
// replicate.StartGate, answers ErrUnavailable); nil removes it. It must be
// cheap: it runs on every write.
func (s *Store) SetWriteGate(gate func(ctx context.Context, d *model.DirEntry) error) {
	if gate == nil {
		s.writeGate.Store(nil)
		return
	}
	s.writeGate.Store(&gate)
}

// primaryEntry returns the directory entry of instance (as dirEntry) when
// it makes this region the instance's writable primary, and ErrFenced
// otherwise: the fence of writes (begin) and of tenant reads (readFenced).
func (s *Store) primaryEntry(ctx context.Context, instance string) (*model.DirEntry, []byte, error) {
	d, raw, err := s.dirEntry(ctx, instance)
	if err != nil {
		return nil, nil, err
	}
	if d.Role != model.RolePrimary || !s.hostsPrimary(d.Primary) {
		s.forgetDir(instance)
		return nil, nil, fmt.Errorf("%w: %s is %s, primary in %s (epoch %d)", ErrFenced, instance, d.Role, d.Primary, d.Epoch)
	}
	return d, raw, nil
}

// cachedDir is a directory entry as last read. A stale one is harmless: the
// commit compares the stored value, fails, and the entry is read again.
type cachedDir struct {
	d   *model.DirEntry
	raw []byte
}

// dirEntry returns the directory entry of instance, from the cache when it
// has one.
func (s *Store) dirEntry(ctx context.Context, instance string) (*model.DirEntry, []byte, error) {
	if v, ok := s.dirs.Load(instance); ok {
		c := v.(cachedDir)
		return c.d, c.raw, nil
	}
	resp, err := s.get(ctx, DirKey(instance))
	if err != nil {
		return nil, nil, wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil, fmt.Errorf("%w: instance %s", ErrNotFound, instance)
	}
	var d model.DirEntry
	if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
		return nil, nil, fmt.Errorf("store: directory entry of %s: %w", instance, err)
	}
	s.dirs.Store(instance, cachedDir{&d, resp.Kvs[0].Value})
	return &d, resp.Kvs[0].Value, nil
}

func (s *Store) forgetDir(instance string) { s.dirs.Delete(instance) }

func (tx *Tx) commit() (bool, error) {
	if len(tx.writes) == 0 && len(tx.deletes) == 0 {
		return true, nil
	}
	r := &commitReq{ctx: tx.ctx, fenceKey: DirKey(tx.dir.Name), fenceVal: string(tx.dirRaw)}
	for k, rev := range tx.reads {
		r.cmps = append(r.cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		r.keys = append(r.keys, k)
	}
	done := map[string]bool{}
	for i := len(tx.order) - 1; i >= 0; i-- { // last write of a key wins
		k := tx.order[i]
		if done[k] {
			continue
		}
		done[k] = true
		if b, ok := tx.writes[k]; ok {
			r.ops = append(r.ops, clientv3.OpPut(k, string(b)))
		} else if tx.deletes[k] {
			r.ops = append(r.ops, clientv3.OpDelete(k))
		}
		if _, read := tx.reads[k]; !read {
			r.keys = append(r.keys, k)
		}
	}
	ok, err := tx.s.committer.commit(r)
	if err == nil && !ok {
		tx.s.forgetDir(tx.dir.Name) // maybe the fence moved: read it again
	}
	return ok, err
}
