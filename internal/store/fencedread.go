package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opendps/opendps/internal/model"
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
	if limit <= 0 {
		limit = 100
	}
	start := prefix
	if after != "" {
		if !strings.HasPrefix(after, prefix) {
			return Page{}, fmt.Errorf("store: continuation outside %s", prefix)
		}
		start = after + "\x00"
	}
	resp, err := s.readFenced(ctx, instance, clientv3.OpGet(start,
		clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(limit))))
	if err != nil {
		return Page{}, err
	}
	p := Page{}
	for _, kv := range resp.Kvs {
		p.Values = append(p.Values, kv.Value)
	}
	if resp.More && len(resp.Kvs) > 0 {
		p.Next = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	return p, nil
}

// readFenced runs op (a range read) in a transaction compared on the
// directory entry of instance, re-reading the entry when it moved.
func (s *Store) readFenced(ctx context.Context, instance string, op clientv3.Op) (*clientv3.GetResponse, error) {
	for range maxAttempts {
		d, raw, err := s.dirEntry(ctx, instance)
		if err != nil {
			return nil, err
		}
		if d.Role != model.RolePrimary || !s.hostsPrimary(d.Primary) {
			s.forgetDir(instance)
			return nil, fmt.Errorf("%w: %s is %s, primary in %s (epoch %d)", ErrFenced, instance, d.Role, d.Primary, d.Epoch)
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
