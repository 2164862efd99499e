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
	resp, err := s.readFenced(ctx, instance, clientv3.OpGet(key))
	if err != nil {
		return false, err
	}
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
	resp, err := s.readFenced(ctx, instance, clientv3.OpGet(start, opts...))
	if err != nil {
		return Page{}, err
	}
	return pageOf(resp), nil
}

// readFenced runs op (a range read) in a transaction compared on the
// directory entry of instance, re-reading the entry when it moved.
func (s *Store) readFenced(ctx context.Context, instance string, op clientv3.Op) (*clientv3.GetResponse, error) {
	for range maxAttempts {
		_, raw, err := s.primaryEntry(ctx, instance)
		if err != nil {
			return nil, err
		}
		var resp *clientv3.TxnResponse
		err = s.read(ctx, func(ctx context.Context) error {
			var err error
			resp, err = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(DirKey(instance)), "=", string(raw))).
				Then(op).Commit()
			return err
		})
		if err != nil {
			return nil, wrapErr(err)
		}
		if resp.Succeeded {
			return (*clientv3.GetResponse)(resp.Responses[0].GetResponseRange()), nil
		}
		s.forgetDir(instance) // the entry moved: read it again
	}
	return nil, ErrConflict
}
