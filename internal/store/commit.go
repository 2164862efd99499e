package store

import (
	"context"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit. Concurrent transactions (registrations of many devices at
// once) are merged into one etcd transaction: the conjunction of their
// comparisons and the union of their operations. That saves the per-
// transaction cost of etcd (request handling, apply, revision bookkeeping),
// which is what limits a busy node. Two transactions that touch a common
// key never share a batch, so each one's comparisons still guard its own
// writes. When a merged transaction fails a comparison, its members are
// committed one by one to find out which of them lost.

// commitReq is one transaction waiting to be committed.
type commitReq struct {
	ctx context.Context
	// fenceKey must hold fenceVal (the instance's directory entry); many
	// requests share it, so it is compared once per batch.
	fenceKey, fenceVal string
	cmps               []clientv3.Cmp // further comparisons (mod revisions)
	ops                []clientv3.Op
	keys               []string // every key compared (except the fence) or written
	done               chan commitResult
}

func (r *commitReq) allCmps() []clientv3.Cmp {
	return append([]clientv3.Cmp{clientv3.Compare(clientv3.Value(r.fenceKey), "=", r.fenceVal)}, r.cmps...)
}

type commitResult struct {
	ok  bool
	err error
}

// committer batches commitReqs. Workers run in parallel so a slow batch does
// not stall the others; a worker takes whatever is queued when it is free.
type committer struct {
	s      *Store
	reqs   chan *commitReq
	maxOps int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newCommitter(s *Store, workers, maxOps int) *committer {
	c := &committer{s: s, reqs: make(chan *commitReq, 4096), maxOps: maxOps, stop: make(chan struct{})}
	for range workers {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

func (c *committer) close() {
	close(c.stop)
	c.wg.Wait()
}

// commit queues r and waits for its outcome. Errors are etcd's, not
// wrapped, so that the caller can tell whether the transaction may have
// applied (retry.go): given up before it was queued, it was not; given up
// while queued or in flight, it may still commit.
func (c *committer) commit(r *commitReq) (bool, error) {
	r.done = make(chan commitResult, 1)
	select {
	case c.reqs <- r:
	case <-r.ctx.Done():
		return false, fmt.Errorf("%w: %w", errNotSent, r.ctx.Err())
	case <-c.stop:
		return false, fmt.Errorf("%w: the store is closing", errNotSent)
	}
	select {
	case res := <-r.done:
		return res.ok, res.err
	case <-r.ctx.Done():
		return false, r.ctx.Err()
	}
}

func (c *committer) run() {
	defer c.wg.Done()
	var carry *commitReq // a request that conflicted with the last batch
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-c.reqs:
			case <-c.stop:
				return
			}
		}
		batch, next := c.gather(first)
		carry = next
		c.commitBatch(batch)
	}
}

// gather collects queued requests that share no key with the batch, up to
// maxOps operations. A conflicting request is returned to start the next
// batch.
func (c *committer) gather(first *commitReq) ([]*commitReq, *commitReq) {
	batch := []*commitReq{first}
	keys := map[string]bool{}
	for _, k := range first.keys {
		keys[k] = true
	}
	fences := map[string]string{first.fenceKey: first.fenceVal}
	nops, ncmps := len(first.ops), len(first.cmps)+1
	for {
		var r *commitReq
		select {
		case r = <-c.reqs:
		default:
			return batch, nil
		}
		fv, sameInstance := fences[r.fenceKey]
		if nops+len(r.ops) > c.maxOps || ncmps+len(r.cmps)+1 > c.maxOps || sharesKey(keys, r.keys) || (sameInstance && fv != r.fenceVal) {
			return batch, r
		}
		if !sameInstance {
			fences[r.fenceKey] = r.fenceVal
			ncmps++
		}
		for _, k := range r.keys {
			keys[k] = true
		}
		nops, ncmps = nops+len(r.ops), ncmps+len(r.cmps)
		batch = append(batch, r)
	}
}

func sharesKey(keys map[string]bool, ks []string) bool {
	for _, k := range ks {
		if keys[k] {
			return true
		}
	}
	return false
}

func (c *committer) commitBatch(batch []*commitReq) {
	if len(batch) == 1 {
		ok, err := c.txn(batch[0].ctx, batch[0].allCmps(), batch[0].ops)
		batch[0].done <- commitResult{ok, err}
		return
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	fenced := map[string]bool{}
	for _, r := range batch {
		if !fenced[r.fenceKey] {
			fenced[r.fenceKey] = true
			cmps = append(cmps, clientv3.Compare(clientv3.Value(r.fenceKey), "=", r.fenceVal))
		}
		cmps = append(cmps, r.cmps...)
		ops = append(ops, r.ops...)
	}
	ok, err := c.txn(context.Background(), cmps, ops)
	if err != nil || ok {
		// A failed batch may have applied: its members must not be
		// committed again one by one (each caller decides, retry.go).
		for _, r := range batch {
			r.done <- commitResult{ok, err}
		}
		return
	}
	// Someone lost a comparison: retry each alone to find out who.
	var wg sync.WaitGroup
	for _, r := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := c.txn(r.ctx, r.allCmps(), r.ops)
			r.done <- commitResult{ok, err}
		}()
	}
	wg.Wait()
}

// txn is one attempt at a transaction (retry.go: the caller retries).
func (c *committer) txn(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) (bool, error) {
	var resp *clientv3.TxnResponse
	err := c.s.once(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		return err
	})
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}
