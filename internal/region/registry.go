package region

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// registerRetry is the wait before registering again after a failure or
// after the lease was lost (the node was cut off longer than its TTL).
const registerRetry = time.Second

// keepRegistered keeps this node's registry entry alive until Close:
// grant a lease, write the entry under it (and the member record), keep
// the lease alive; when the lease is lost, start over. ch is the
// keep-alive channel of a registration made already, or nil.
func (r *Region) keepRegistered(ch <-chan *clientv3.LeaseKeepAliveResponse) {
	defer r.revoke()
	for {
		var err error
		if ch == nil {
			ch, err = r.register(r.ctx)
		}
		if err == nil {
			for range ch { // keep-alive answers, until the lease is lost
			}
			ch = nil
		} else if r.ctx.Err() == nil {
			r.log.Debug("node registration failed", "err", err)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(registerRetry):
		}
	}
}

// setLease records the id of the current registration lease (0: none).
func (r *Region) setLease(id clientv3.LeaseID) {
	r.mu.Lock()
	r.lease = id
	r.mu.Unlock()
}

func (r *Region) register(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	b, err := json.Marshal(r.self)
	if err != nil {
		return nil, err
	}
	rec, err := json.Marshal(MemberRecord{Name: r.self.Name, Zone: r.self.Zone, MemberID: r.self.MemberID})
	if err != nil {
		return nil, err
	}
	g, err := r.cli.Grant(octx, int64(r.cfg.LeaseTTL/time.Second))
	if err != nil {
		return nil, err
	}
	ops := []clientv3.Op{clientv3.OpPut(NodeKey(r.self.Region, r.self.Name), string(b), clientv3.WithLease(g.ID))}
	if r.self.MemberID != "" { // an embedded member: remember its zone
		ops = append(ops, clientv3.OpPut(MemberKey(r.self.Region, r.self.Name), string(rec)))
	}
	_, err = r.cli.Txn(octx).Then(ops...).Commit()
	if err != nil {
		return nil, err
	}
	r.setLease(g.ID)
	return r.cli.KeepAlive(ctx, g.ID)
}

// revoke removes the registry entry at once by revoking its lease.
func (r *Region) revoke() {
	r.mu.Lock()
	id := r.lease
	r.lease = 0
	r.mu.Unlock()
	if ok, _ := r.st.Ready(); id == 0 || !ok { // without a quorum the lease expires by itself
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	r.cli.Revoke(ctx, id)
}
