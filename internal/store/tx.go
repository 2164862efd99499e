package store

import (
	"context"
	"encoding/json"
	"fmt"

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
	reads   map[string]int64 // key -> mod revision seen (0: absent)
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
	ctx, cancel := tx.s.opCtx(tx.ctx)
	defer cancel()
	resp, err := tx.s.cli.Get(ctx, key)
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
func (s *Store) Update(ctx context.Context, instance string, fn func(*Tx) error) error {
	for range maxAttempts {
		tx, err := s.begin(ctx, instance)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		ok, err := tx.commit()
		if err != nil || ok {
			return err
		}
	}
	return ErrConflict
}

func (s *Store) begin(ctx context.Context, instance string) (*Tx, error) {
	cctx, cancel := s.opCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, DirKey(instance))
	if err != nil {
		return nil, wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: instance %s", ErrNotFound, instance)
	}
	var d model.DirEntry
	if err := json.Unmarshal(resp.Kvs[0].Value, &d); err != nil {
		return nil, fmt.Errorf("store: directory entry of %s: %w", instance, err)
	}
	if d.Role != model.RolePrimary || !s.hostsPrimary(d.Primary) {
		return nil, fmt.Errorf("%w: %s is %s, primary in %s (epoch %d)", ErrFenced, instance, d.Role, d.Primary, d.Epoch)
	}
	return &Tx{s: s, ctx: ctx, dir: &d, dirRaw: resp.Kvs[0].Value,
		reads: map[string]int64{}, writes: map[string][]byte{}, deletes: map[string]bool{}}, nil
}

func (tx *Tx) commit() (bool, error) {
	if len(tx.writes) == 0 && len(tx.deletes) == 0 {
		return true, nil
	}
	dirKey := DirKey(tx.dir.Name)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Value(dirKey), "=", string(tx.dirRaw))}
	for k, rev := range tx.reads {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	var ops []clientv3.Op
	done := map[string]bool{}
	for i := len(tx.order) - 1; i >= 0; i-- { // last write of a key wins
		k := tx.order[i]
		if done[k] {
			continue
		}
		done[k] = true
		if b, ok := tx.writes[k]; ok {
			ops = append(ops, clientv3.OpPut(k, string(b)))
		} else if tx.deletes[k] {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ctx, cancel := tx.s.opCtx(tx.ctx)
	defer cancel()
	resp, err := tx.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, wrapErr(err)
	}
	return resp.Succeeded, nil
}
