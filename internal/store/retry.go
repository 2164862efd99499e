package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// Deadlines and retries (docs/zones.md).
//
// Every storage request runs in attempts bounded by RequestTimeout, so a
// request caught on a dead or partitioned leader fails over instead of
// hanging: followers forward proposals to the leader they believe in and
// etcd does not fail them fast (spec/engine-bench.md §3.4).
//
//   - A read is retried after any transient failure: it changes nothing.
//   - A write is retried only when the failure proves that it was not
//     applied: the local member knew no leader and nothing was proposed,
//     the proposal was dropped by Raft, or etcd refused it before
//     proposing (no leader, too many requests). A write that timed out
//     may have committed; Update reports it as ErrIndeterminate and does
//     not retry it, because a second run of a create or of an If-Match
//     update could answer "exists" or "etag mismatch" for a write that in
//     fact succeeded.
//   - UpdateIdempotent also retries indeterminate commits, by running its
//     function again on fresh reads. That is only correct for functions
//     whose outcome does not depend on whether the earlier attempt
//     committed, like the registration write, which re-decides on the
//     registration record it reads (a repeat of an assigned device is
//     idempotent).
const (
	// DefaultRequestTimeout bounds one attempt: above etcd's measured
	// leader-failover pause of 1.3-1.8 s it would hold a request on a dead
	// leader for longer than a new leader takes to appear.
	DefaultRequestTimeout = 1500 * time.Millisecond
	// DefaultAttempts bounds the attempts of one request.
	DefaultAttempts = 3

	retryBackoff    = 50 * time.Millisecond
	maxRetryBackoff = 400 * time.Millisecond
	leaderPoll      = 20 * time.Millisecond
)

// ErrIndeterminate is wrapped (with ErrUnavailable) in the error of a write
// that failed in a way that leaves open whether it was applied: the client
// must read before deciding, or repeat an idempotent request.
var ErrIndeterminate = errors.New("store: the write may or may not have been applied")

// errNoLeader: the local member knows no leader, so nothing was proposed.
var errNoLeader = errors.New("store: the local etcd member has no leader")

// errNotSent: the request was given up before it was sent.
var errNotSent = errors.New("store: request not sent")

// read runs f, a read, in bounded attempts, retrying transient failures.
func (s *Store) read(ctx context.Context, f func(context.Context) error) error {
	return s.attempt(ctx, transient, f)
}

// write runs f, a write, in bounded attempts, retrying only failures that
// prove f's write was not applied. Other failures are marked indeterminate.
func (s *Store) write(ctx context.Context, f func(context.Context) error) error {
	err := s.attempt(ctx, notApplied, f)
	return indeterminate(err)
}

// indeterminate marks err, the error of a write, as ErrIndeterminate unless
// it proves the write was not applied.
func indeterminate(err error) error {
	if err == nil || notApplied(err) || errors.Is(err, ErrIndeterminate) {
		return err
	}
	return fmt.Errorf("%w: %w: %v", ErrUnavailable, ErrIndeterminate, err)
}

func (s *Store) attempt(ctx context.Context, retry func(error) bool, f func(context.Context) error) error {
	var err error
	backoff := retryBackoff
	for i := range s.attempts {
		if i > 0 {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			backoff = min(2*backoff, maxRetryBackoff)
		}
		err = s.once(ctx, f)
		if err == nil || ctx.Err() != nil || !retry(err) {
			return err
		}
	}
	return err
}

// once is one attempt: wait (within the attempt's deadline) for the local
// member to know a leader, then run f.
func (s *Store) once(ctx context.Context, f func(context.Context) error) error {
	actx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.waitLeader(actx); err != nil {
		return err
	}
	return f(actx)
}

// waitLeader returns when the embedded member knows a leader, or
// errNoLeader when ctx ends first. With an external cluster it returns at
// once: the client fails over between endpoints by itself.
func (s *Store) waitLeader(ctx context.Context) error {
	if s.HasLeader() {
		return nil
	}
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return errNoLeader
		case <-t.C:
			if s.HasLeader() {
				return nil
			}
		}
	}
}

// HasLeader reports whether the embedded member currently knows a Raft
// leader (an atomic load, cheap enough for every request). A member cut
// off from the quorum loses its leader within an election timeout: a
// follower turns pre-candidate, a leader steps down (CheckQuorum). With an
// external cluster it is always true.
func (s *Store) HasLeader() bool {
	return s.etcd == nil || s.etcd.Server.Leader() != 0
}

// transient reports whether a failed read is worth another attempt.
func transient(err error) bool {
	if errors.Is(err, errNoLeader) || errors.Is(err, context.DeadlineExceeded) || notApplied(err) {
		return true
	}
	var e rpctypes.EtcdError
	if errors.As(err, &e) {
		switch e.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Unknown:
			return true
		}
		return false
	}
	// Transport errors of a gRPC client (external cluster).
	msg := err.Error()
	return strings.Contains(msg, "code = Unavailable") || strings.Contains(msg, "code = DeadlineExceeded")
}

// notApplied reports whether err proves that a write was not applied.
func notApplied(err error) bool {
	switch {
	case errors.Is(err, errNoLeader), errors.Is(err, errNotSent),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTooManyRequests):
		return true
	}
	// raft.ErrProposalDropped reaches the client as an unknown gRPC error.
	return strings.Contains(err.Error(), "raft proposal dropped")
}

// Put writes value at key outside any instance transaction (for records
// such as operation markers), in bounded attempts. A put of a fixed value
// is idempotent, so every transient failure is retried, including one that
// leaves open whether the put applied.
func (s *Store) Put(ctx context.Context, key, value string, opts ...clientv3.OpOption) error {
	return wrapErr(s.read(ctx, func(ctx context.Context) error {
		_, err := s.cli.Put(ctx, key, value, opts...)
		return err
	}))
}

// Delete removes key in bounded attempts (a delete is idempotent, so one
// that failed in doubt is retried too) and reports whether it existed.
func (s *Store) Delete(ctx context.Context, key string) (bool, error) {
	var deleted bool
	err := s.read(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Delete(ctx, key)
		if err == nil {
			deleted = deleted || resp.Deleted > 0
		}
		return err
	})
	return deleted, wrapErr(err)
}

// Grant grants a lease of ttl (whole seconds) in bounded attempts. A grant
// that failed in doubt is retried too: a lease nobody uses expires.
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (clientv3.LeaseID, error) {
	var id clientv3.LeaseID
	err := s.read(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Grant(ctx, int64(ttl/time.Second))
		if err == nil {
			id = resp.ID
		}
		return err
	})
	return id, wrapErr(err)
}
