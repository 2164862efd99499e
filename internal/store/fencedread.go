package store

import (
	"context"
	"encoding/json"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fenced reads: a tenant's read of an instance's records is one etcd
// transaction that also compares the instance's directory entry, exactly as
// a write does (Update). Whatever it returns is as of a revision at which
// this region was the instance's writable primary, so a region that has
// been fenced or failed over never answers a read from its copy while the
// new primary accepts writes: without it, a read in the old primary just
// after a planned failover could miss a write the new primary acknowledged
// (the disaster suite's history check found it, docs/dr-design.md).

// GetFenced is Get of a record of instance, fenced like a write: ErrFenced
// when this region is not the instance's writable primary.
func (s *Store) GetFenced(ctx context.Context, instance, key string, v any) (bool, error) {
	resps, err := s.readFenced(ctx, instance, clientv3.OpGet(key))
	if err != nil {
		return false, err
	}
	resp := resps[0]
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	return true, json.Unmarshal(resp.Kvs[0].Value, v)
}

// ListFenced is List of records of instance, fenced like a write.
func (s *Store) ListFenced(ctx context.Context, instance, prefix, after string, limit int) (Page, error) {
	start, opts, err := pageRange(prefix, after, limit)
	if err != nil {
		return Page{}, err
	}
	resps, err := s.readFenced(ctx, instance, clientv3.OpGet(start, opts...))
	if err != nil {
		return Page{}, err
	}
	return pageOf(resps[0]), nil
}

// GetManyFenced reads keys of instance in one fenced transaction (one
// round trip, one revision) and returns their values in order, nil for a
// missing key. len(keys) must stay under etcd's operations per
// transaction (the embedded member allows 1,088; pages hold at most 1,000).
func (s *Store) GetManyFenced(ctx context.Context, instance string, keys []string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resps, err := s.readFenced(ctx, instance, ops...)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, r := range resps {
		if len(r.Kvs) > 0 {
			out[i] = r.Kvs[0].Value
		}
	}
	return out, nil
}

// readFenced runs ops (range reads) in a transaction compared on the
// directory entry of instance, re-reading the entry when it moved.
func (s *Store) readFenced(ctx context.Context, instance string, ops ...clientv3.Op) ([]*clientv3.GetResponse, error) {
	for range maxAttempts {
		_, raw, err := s.primaryEntry(ctx, instance)
		if err != nil {
			return nil, err
		}
		var resp *clientv3.TxnResponse
		err = s.read(ctx, func(ctx context.Context) error {
			var err error
			resp, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(DirKey(instance)), "=", string(raw))).
				Then(ops...).Commit()
			return err
		})
		if err != nil {
			return nil, wrapErr(err)
		}
		if resp.Succeeded {
			out := make([]*clientv3.GetResponse, len(resp.Responses))
			for i, r := range resp.Responses {
				out[i] = (*clientv3.GetResponse)(r.GetResponseRange())
			}
			return out, nil
		}
		s.forgetDir(instance) // the entry moved: read it again
	}
	return nil, ErrConflict
}
