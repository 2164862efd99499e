package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestErrorClassification(t *testing.T) {
	dropped := errors.New("rpc error: code = Unknown desc = raft proposal dropped")
	tests := []struct {
		err                   error
		notApplied, transient bool
	}{
		{errNoLeader, true, true},
		{fmt.Errorf("%w: %w", errNotSent, context.DeadlineExceeded), true, true},
		{rpctypes.ErrNoLeader, true, true},
		{rpctypes.ErrTooManyRequests, true, true},
		{dropped, true, true},
		{context.DeadlineExceeded, false, true},
		{rpctypes.ErrTimeout, false, true},
		{rpctypes.ErrTimeoutDueToLeaderFail, false, true},
		{rpctypes.ErrLeaderChanged, false, true},
		{rpctypes.ErrStopped, false, true},
		{rpctypes.ErrCompacted, false, false},
		{rpctypes.ErrRequestTooLarge, false, false},
		{errors.New("something else"), false, false},
	}
	for _, tt := range tests {
		if got := notApplied(tt.err); got != tt.notApplied {
			t.Errorf("notApplied(%v) = %t, want %t", tt.err, got, tt.notApplied)
		}
		if got := transient(tt.err); got != tt.transient {
			t.Errorf("transient(%v) = %t, want %t", tt.err, got, tt.transient)
		}
	}
	if err := indeterminate(context.DeadlineExceeded); !errors.Is(err, ErrIndeterminate) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("indeterminate(timeout) = %v, want ErrIndeterminate and ErrUnavailable", err)
	}
	if err := indeterminate(rpctypes.ErrNoLeader); errors.Is(err, ErrIndeterminate) {
		t.Errorf("indeterminate(no leader) = %v: a write refused before it was proposed is not indeterminate", err)
	}
}

// faultyKV fails the next Txn commits with err; applied says whether each
// failing commit is applied first (a timeout after the commit).
type faultyKV struct {
	clientv3.KV
	mu      sync.Mutex
	fails   int
	err     error
	applied bool
}

func (f *faultyKV) Txn(ctx context.Context) clientv3.Txn {
	return &faultyTxn{Txn: f.KV.Txn(ctx), kv: f}
}

type faultyTxn struct {
	clientv3.Txn
	kv *faultyKV
}

func (t *faultyTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *faultyTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }

func (t *faultyTxn) Commit() (*clientv3.TxnResponse, error) {
	t.kv.mu.Lock()
	fail := t.kv.fails > 0
	if fail {
		t.kv.fails--
	}
	t.kv.mu.Unlock()
	if !fail {
		return t.Txn.Commit()
	}
	if t.kv.applied {
		if _, err := t.Txn.Commit(); err != nil {
			return nil, err
		}
	}
	return nil, t.kv.err
}

// TestUpdateRetryRule checks the rule of retry.go on a real store whose
// commits fail on purpose: a commit that provably did not apply is
// retried; one that may have applied is not (Update), unless the function
// is idempotent (UpdateIdempotent), which then sees its own earlier write.
func TestUpdateRetryRule(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "inst1", "0ne00000001")
	ctx := context.Background()
	f := &faultyKV{KV: s.cli.KV}
	s.cli.KV = f
	// create puts key unless it exists, like a create-only API call.
	create := func(key string, runs *int) func(*Tx) error {
		return func(tx *Tx) error {
			*runs++
			var v string
			if ok, err := tx.Get(key, &v); err != nil || ok {
				return errors.Join(err, fmt.Errorf("%w: %s", ErrExists, key))
			}
			return tx.Put(key, "v")
		}
	}
	tests := []struct {
		name       string
		err        error
		applied    bool
		idempotent bool
		wantRuns   int
		wantErr    error // nil: success
	}{
		{"not applied: retried", rpctypes.ErrNoLeader, false, false, 2, nil},
		{"proposal dropped: retried", errors.New("raft proposal dropped"), false, false, 2, nil},
		{"timed out after applying: indeterminate", context.DeadlineExceeded, true, false, 1, ErrIndeterminate},
		{"idempotent: retried, sees its own write", context.DeadlineExceeded, true, true, 2, ErrExists},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := Key("inst1", KindEnrollment, fmt.Sprint("k", i))
			f.mu.Lock()
			f.fails, f.err, f.applied = 1, tt.err, tt.applied
			f.mu.Unlock()
			runs := 0
			update := s.Update
			if tt.idempotent {
				update = s.UpdateIdempotent
			}
			err := update(ctx, "inst1", create(key, &runs))
			if runs != tt.wantRuns || (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("runs %d, err %v; want runs %d, err %v", runs, err, tt.wantRuns, tt.wantErr)
			}
			var v string
			if ok, err := s.Get(ctx, key, &v); err != nil || !ok {
				t.Errorf("key written: %t, %v; want it written in every case", ok, err)
			}
		})
	}
}
