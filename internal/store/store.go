// Package store keeps opendps state in etcd: an embedded member by default,
// or an external etcd cluster.
//
// Keyspace (DESIGN §4): one prefix per instance, so that an instance can be
// replicated, exported or deleted as a unit.
//
//	/opendps/dir/{instance}            directory entry (model.DirEntry): what writes are fenced on
//	/opendps/scope/{idScope}           -> instance name
//	/opendps/i/{instance}/conf         model.Instance
//	/opendps/i/{instance}/{kind}/{id}  records: enr, grp, reg, reggrp, cert, hub, op
//
// Every write to an instance goes through Update, one etcd transaction that
// also compares the instance's directory entry (role and epoch), so a node
// that missed a failover cannot write. Etags live in the records, never in
// etcd revisions, which differ between regions.
//
// A Store is safe for concurrent use.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/internal/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Errors returned by the store.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrExists      = errors.New("store: already exists")
	ErrFenced      = errors.New("store: instance is not writable in this region (fenced)")
	ErrConflict    = errors.New("store: too much contention, try again")
	ErrUnavailable = errors.New("store: storage unavailable")
)

// Record kinds under an instance prefix.
const (
	KindEnrollment        = "enr"
	KindGroup             = "grp"
	KindRegistration      = "reg"
	KindGroupRegistration = "reggrp" // index: reggrp/{group}/{registration} -> ""
	KindCertificate       = "cert"
	KindHub               = "hub"
	KindOperation         = "op"
)

const (
	rootPrefix  = "/opendps/"
	dirPrefix   = rootPrefix + "dir/"
	scopePrefix = rootPrefix + "scope/"
	instPrefix  = rootPrefix + "i/"
)

// DirKey is the directory entry key of an instance.
func DirKey(instance string) string { return dirPrefix + instance }

// ScopeKey is the ID-scope index key.
func ScopeKey(idScope string) string { return scopePrefix + strings.ToLower(idScope) }

// InstancePrefix is the prefix holding all of an instance's records.
func InstancePrefix(instance string) string { return instPrefix + instance + "/" }

// ConfKey is the key of the instance configuration.
func ConfKey(instance string) string { return InstancePrefix(instance) + "conf" }

// Key is the key of record id (case-folded) of kind in instance.
func Key(instance, kind, id string) string {
	return InstancePrefix(instance) + kind + "/" + strings.ToLower(id)
}

// KindPrefix is the prefix of all records of kind in instance.
func KindPrefix(instance, kind string) string { return InstancePrefix(instance) + kind + "/" }

// Store is the etcd-backed state of a node.
type Store struct {
	cli      *clientv3.Client
	etcd     *embed.Etcd // nil with an external cluster
	log      *slog.Logger
	timeout  time.Duration // of one attempt
	attempts int
	health   *health
	region   string
	hosted   map[string]bool // further regions hosted as primary; "*" = all

	committer *committer
	dirs      sync.Map // instance -> cachedDir
	closed    atomic.Bool
	writeGate atomic.Pointer[func(context.Context, *model.DirEntry) error] // SetWriteGate
}

// hostsPrimary reports whether an instance whose primary is region may be
// written through this store.
func (s *Store) hostsPrimary(region string) bool {
	return s.region == "" || region == s.region || s.hosted["*"] || s.hosted[region]
}

// Client returns the etcd client (for elections and watches).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Etcd returns the embedded member, or nil with an external cluster.
func (s *Store) Etcd() *embed.Etcd { return s.etcd }

// MemberStopped is closed when the embedded member stops: by Close, or on
// its own (removed from the cluster, a fatal error). Nil with an external
// cluster.
func (s *Store) MemberStopped() <-chan struct{} {
	if s.etcd == nil {
		return nil
	}
	return s.etcd.Server.StopNotify()
}

// Closed reports whether Close was called.
func (s *Store) Closed() bool { return s.closed.Load() }

// Close stops the client and the embedded member. It is idempotent.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.stopMonitor()
	if s.committer != nil {
		s.committer.close()
		s.committer = nil
	}
	if s.cli != nil {
		s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
	}
	return nil
}

func wrapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, e := range []error{ErrNotFound, ErrExists, ErrFenced, ErrConflict, ErrUnavailable} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// Get reads key into v (JSON). It reports whether the key exists.
func (s *Store) Get(ctx context.Context, key string, v any) (bool, error) {
	resp, err := s.get(ctx, key)
	if err != nil {
		return false, wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	return true, json.Unmarshal(resp.Kvs[0].Value, v)
}

// GetRev reads key into v and returns its mod revision (0 when absent) and
// the raw value. A serializable read is answered by the local member without
// a round of consensus: it may be slightly stale, which is fine for reads
// whose revision a later transaction compares (Tx.Seed) or that only
// authenticate.
func (s *Store) GetRev(ctx context.Context, key string, v any, serializable bool) (rev int64, raw []byte, err error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := s.get(ctx, key, opts...)
	if err != nil {
		return 0, nil, wrapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil, nil
	}
	kv := resp.Kvs[0]
	if v != nil {
		if err := json.Unmarshal(kv.Value, v); err != nil {
			return 0, nil, err
		}
	}
	return kv.ModRevision, kv.Value, nil
}

// Page is one page of a key-range listing.
type Page struct {
	Values [][]byte
	// Next is the last key returned when more keys may follow, "" at the end.
	Next string
}

// List returns up to limit values under prefix whose keys sort after after
// ("" for the first page). It reads one key range: no full scans.
func (s *Store) List(ctx context.Context, prefix, after string, limit int) (Page, error) {
	start, opts, err := pageRange(prefix, after, limit)
	if err != nil {
		return Page{}, err
	}
	resp, err := s.get(ctx, start, opts...)
	if err != nil {
		return Page{}, wrapErr(err)
	}
	return pageOf(resp), nil
}

// pageRange is the range read of one page of List (and ListFenced): its
// first key and options.
func pageRange(prefix, after string, limit int) (string, []clientv3.OpOption, error) {
	if limit <= 0 {
		limit = 100
	}
	start := prefix
	if after != "" {
		if !strings.HasPrefix(after, prefix) {
			return "", nil, fmt.Errorf("store: continuation outside %s", prefix)
		}
		start = after + "\x00"
	}
	return start, []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(limit))}, nil
}

// pageOf is the Page of a pageRange read.
func pageOf(resp *clientv3.GetResponse) Page {
	p := Page{}
	for _, kv := range resp.Kvs {
		p.Values = append(p.Values, kv.Value)
	}
	if resp.More && len(resp.Kvs) > 0 {
		p.Next = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	return p
}

// Each calls fn with every value under prefix, in key order, reading a
// page of 500 at a time; an error of fn stops it and is returned.
func (s *Store) Each(ctx context.Context, prefix string, fn func(value []byte) error) error {
	after := ""
	for {
		p, err := s.List(ctx, prefix, after, 500)
		if err != nil {
			return err
		}
		for _, v := range p.Values {
			if err := fn(v); err != nil {
				return err
			}
		}
		if p.Next == "" {
			return nil
		}
		after = p.Next
	}
}

// Keys returns up to limit keys under prefix after after, like List.
func (s *Store) Keys(ctx context.Context, prefix, after string, limit int) ([]string, string, error) {
	start := prefix
	if after != "" {
		start = after + "\x00"
	}
	resp, err := s.get(ctx, start, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(limit)), clientv3.WithKeysOnly())
	if err != nil {
		return nil, "", wrapErr(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	next := ""
	if resp.More && len(keys) > 0 {
		next = keys[len(keys)-1]
	}
	return keys, next, nil
}

// Count returns the number of keys under prefix.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrapErr(err)
	}
	return resp.Count, nil
}

// get is a read of etcd in bounded attempts (retry.go).
func (s *Store) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		resp, err = s.cli.Get(ctx, key, opts...)
		return err
	})
	return resp, err
}
