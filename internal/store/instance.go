package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opendps/opendps/internal/model"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// CreateInstance writes a new instance: its directory entry, its ID-scope
// index and its configuration, in one transaction that fails with ErrExists
// if the name or the ID scope is taken.
func (s *Store) CreateInstance(ctx context.Context, dir model.DirEntry, inst *model.Instance) error {
	dirB, err := json.Marshal(dir)
	if err != nil {
		return err
	}
	confB, err := json.Marshal(inst)
	if err != nil {
		return err
	}
	var resp *clientv3.TxnResponse
	err = s.write(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(DirKey(dir.Name)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(ScopeKey(dir.IDScope)), "=", 0),
		).Then(
			clientv3.OpPut(DirKey(dir.Name), string(dirB)),
			clientv3.OpPut(ScopeKey(dir.IDScope), dir.Name),
			clientv3.OpPut(ConfKey(dir.Name), string(confB)),
		).Commit()
		return err
	})
	if err != nil {
		return wrapErr(err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: instance name or ID scope taken", ErrExists)
	}
	return nil
}

// Dir returns the directory entry of instance.
func (s *Store) Dir(ctx context.Context, instance string) (*model.DirEntry, error) {
	var d model.DirEntry
	ok, err := s.Get(ctx, DirKey(instance), &d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: instance %s", ErrNotFound, instance)
	}
	return &d, nil
}

// Instance returns the configuration of instance.
func (s *Store) Instance(ctx context.Context, instance string) (*model.Instance, error) {
	var in model.Instance
	ok, err := s.Get(ctx, ConfKey(instance), &in)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: instance %s", ErrNotFound, instance)
	}
	return &in, nil
}

// ResolveScope returns the instance name of an ID scope (case-insensitive).
func (s *Store) ResolveScope(ctx context.Context, idScope string) (string, error) {
	resp, err := s.get(ctx, ScopeKey(idScope))
	if err != nil {
		return "", wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w: ID scope %s", ErrNotFound, idScope)
	}
	return string(resp.Kvs[0].Value), nil
}

// ScopeTaken reports whether an ID scope is in use.
func (s *Store) ScopeTaken(ctx context.Context, idScope string) (bool, error) {
	_, err := s.ResolveScope(ctx, idScope)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// ListDirs returns every directory entry, in name order.
func (s *Store) ListDirs(ctx context.Context) ([]*model.DirEntry, error) {
	var out []*model.DirEntry
	after := ""
	for {
		p, err := s.List(ctx, dirPrefix, after, 500)
		if err != nil {
			return nil, err
		}
		for _, v := range p.Values {
			var d model.DirEntry
			if err := json.Unmarshal(v, &d); err != nil {
				return nil, err
			}
			out = append(out, &d)
		}
		if p.Next == "" {
			return out, nil
		}
		after = p.Next
	}
}

// DeleteInstance removes an instance and all its records, fenced like any
// write to the instance.
func (s *Store) DeleteInstance(ctx context.Context, instance string) error {
	tx, err := s.begin(ctx, instance)
	if err != nil {
		return err
	}
	var resp *clientv3.TxnResponse
	err = s.write(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.Value(DirKey(instance)), "=", string(tx.dirRaw)),
		).Then(
			clientv3.OpDelete(InstancePrefix(instance), clientv3.WithPrefix()),
			clientv3.OpDelete(ScopeKey(tx.dir.IDScope)),
			clientv3.OpDelete(DirKey(instance)),
		).Commit()
		return err
	})
	if err != nil {
		return wrapErr(err)
	}
	s.forgetDir(instance)
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}
