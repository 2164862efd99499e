package dr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Failover promotes this region for instances whose primary is req.From
// (or, with named instances and no From, their own primary): one
// transaction per instance sets {Primary: here, Secondary: From, Epoch+1,
// Role: primary, FailedOverAt: now}, compared on the directory entry.
//
// Unplanned, it first tries to fence From over the peer link (2 s); a
// failure does not stop it (the old primary learns of the new epoch when it
// comes back and demotes itself). Planned, the fence must succeed and the
// promotion waits (DrainTimeout at most) until the local ReplState reached
// the fence's revision, so that nothing is lost; an instance that does not
// drain is refused and unfenced.
//
// Instances still in their base copy, or failed over within the cool-down,
// are refused unless req.Force. A failover reads only directory entries and
// replication states, never an instance's records. The report lists every
// instance; when named instances were all refused the error wraps
// ErrRefused too.
func (m *Manager) Failover(ctx context.Context, req FailoverRequest) (*model.FailoverReport, error) {
	if req.From == "" && len(req.Instances) == 0 {
		return nil, fmt.Errorf("%w: name the region failed over from, or the instances", ErrInvalid)
	}
	if req.From == m.cfg.Region {
		return nil, fmt.Errorf("%w: %s is this region: run the failover on the secondary side", ErrInvalid, req.From)
	}
	rep := &model.FailoverReport{Region: req.From, To: m.cfg.Region, Planned: req.Planned,
		Started: m.now(), Items: []model.FailoverItem{}}
	targets, err := m.failoverTargets(ctx, req)
	if err != nil {
		return nil, err
	}
	var ok []*candidate
	for _, t := range targets {
		c := m.check(ctx, t, req)
		if c.err != nil {
			return nil, c.err
		}
		if c.item.Status != "" {
			rep.Items = append(rep.Items, c.item)
			continue
		}
		ok = append(ok, c)
	}
	for from, cs := range byRegion(ok) {
		if rep.Region == "" {
			rep.Region = from
		}
		if err := m.failoverFrom(ctx, from, cs, req); err != nil {
			countFailoverError(req.Planned)
			return nil, err
		}
		for _, c := range cs {
			rep.Items = append(rep.Items, c.item)
		}
	}
	rep.Duration = m.now().Sub(rep.Started)
	for _, it := range rep.Items {
		m.log.Info("failover", "instance", it.Instance, "from", it.From, "status", it.Status, "epoch", it.Epoch,
			"reason", it.Reason, "last_replicated_rev", it.LastReplicatedRev, "old_primary_fenced", it.OldPrimaryFenced)
	}
	countFailover(req.Planned, rep.Items)
	return rep, allRefused(len(req.Instances) > 0, failoverReasons(rep.Items))
}

// candidate is an instance a failover may promote.
type candidate struct {
	e    *entry
	from string
	rs   *model.ReplState
	item model.FailoverItem // Status set once decided
	err  error              // storage failure
}

func (m *Manager) failoverTargets(ctx context.Context, req FailoverRequest) ([]target, error) {
	if len(req.Instances) > 0 {
		return m.named(ctx, req.Instances)
	}
	all, err := m.dirs(ctx)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, e := range all {
		if e.d.DREnabled && e.d.Primary == req.From && e.d.Role == model.RoleSecondary {
			out = append(out, target{name: e.d.Name, e: e})
		}
	}
	return out, nil
}

// check decides whether t may be promoted.
func (m *Manager) check(ctx context.Context, t target, req FailoverRequest) *candidate {
	c := &candidate{e: t.e, item: model.FailoverItem{Instance: t.name, From: req.From, To: m.cfg.Region}}
	refuse := func(format string, args ...any) *candidate {
		c.item.Status, c.item.Reason = model.FailoverRefused, fmt.Sprintf(format, args...)
		return c
	}
	if t.e == nil {
		return refuse("%s", t.reason)
	}
	d := t.e.d
	c.item.Epoch = d.Epoch
	switch {
	case !d.DREnabled:
		return refuse("%s", ErrResidency.Error())
	case d.Primary == m.cfg.Region && d.Role == model.RolePrimary:
		c.item.Status, c.item.Reason = model.FailoverSkipped, fmt.Sprintf("already primary in %s (epoch %d)", m.cfg.Region, d.Epoch)
		return c
	case req.From != "" && d.Primary != req.From:
		return refuse("its primary is %s, not %s", d.Primary, req.From)
	case d.Role != model.RoleSecondary:
		return refuse("its role in %s is %s, not secondary", m.cfg.Region, d.Role)
	}
	c.from, c.item.From = d.Primary, d.Primary
	if c.rs, c.err = m.replState(ctx, d.Name); c.err != nil {
		return c
	}
	if c.rs != nil {
		c.item.LastReplicatedRev, c.item.LastReplicatedTime = c.rs.Rev, c.rs.SourceTime
	}
	if !req.Force {
		switch {
		case c.rs == nil:
			return refuse("nothing was replicated to %s yet (--force promotes an empty copy)", m.cfg.Region)
		case c.rs.Phase == model.ReplCopying:
			return refuse("the base copy to %s is under way: the copy is incomplete (--force promotes it anyway)", m.cfg.Region)
		}
		if since := m.now().Sub(d.FailedOverAt); !d.FailedOverAt.IsZero() && since < m.cfg.Cooldown {
			return refuse("failed over %s ago, within the cool-down of %s (--force overrides it)",
				since.Round(time.Second), m.cfg.Cooldown)
		}
	}
	return c
}

func byRegion(cs []*candidate) map[string][]*candidate {
	out := map[string][]*candidate{}
	for _, c := range cs {
		out[c.from] = append(out[c.from], c)
	}
	return out
}

// failoverFrom fences from and promotes the candidates, setting their
// items.
func (m *Manager) failoverFrom(ctx context.Context, from string, cs []*candidate, req FailoverRequest) error {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.e.d.Name
	}
	fenced := map[string]model.FenceItem{} // every item of the answer
	res, ferr := m.peerFence(ctx, from, names, false)
	if ferr == nil {
		for _, it := range res.Items {
			fenced[it.Instance] = it
		}
	} else {
		m.log.Warn("fence over the peer link failed", "region", from, "err", ferr)
	}
	if req.Planned {
		cs = m.drain(ctx, from, cs, fenced, ferr)
	}
	for _, c := range cs {
		c.item.OldPrimaryFenced = fenced[c.e.d.Name].Status == model.FenceFenced || req.FencedDirectly
		if err := m.promote(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until every fenced candidate's ReplState reached its fence
// and returns those that did; the others are refused and unfenced.
func (m *Manager) drain(ctx context.Context, from string, cs []*candidate, fenced map[string]model.FenceItem, ferr error) []*candidate {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DrainTimeout)
	defer cancel()
	var ok, undo []*candidate
	for _, c := range cs {
		it, answered := fenced[c.e.d.Name]
		switch {
		case ferr != nil:
			c.item.Status, c.item.Reason = model.FailoverRefused, fmt.Sprintf("a planned failover must fence %s first: %v", from, ferr)
		case !answered:
			c.item.Status, c.item.Reason = model.FailoverRefused, fmt.Sprintf("%s did not answer for it", from)
		case it.Status != model.FenceFenced:
			c.item.Status, c.item.Reason = model.FailoverRefused, fmt.Sprintf("%s did not fence it: %s", from, it.Reason)
		default:
			rs, err := m.waitRev(ctx, c.e.d.Name, drainTarget(it))
			if err == nil {
				c.rs = rs
				ok = append(ok, c)
				continue
			}
			c.item.Status, c.item.Reason = model.FailoverRefused, err.Error()
			undo = append(undo, c)
		}
	}
	if len(undo) > 0 {
		names := make([]string, len(undo))
		for i, c := range undo {
			names[i] = c.e.d.Name
		}
		if _, err := m.peerFence(context.WithoutCancel(ctx), from, names, true); err != nil {
			m.log.Error("could not lift the fence after a failed drain: writes stay closed until a failover", "region", from, "instances", names, "err", err)
		}
	}
	return ok
}

// drainTarget is the source revision a destination must reach to hold
// every write of a fenced instance: DataRev (a stream that carries the
// fence itself reaches SourceRev, which is later).
func drainTarget(it model.FenceItem) int64 {
	if it.DataRev > 0 {
		return it.DataRev
	}
	return it.SourceRev
}

// waitRev waits until the ReplState of instance reached rev.
func (m *Manager) waitRev(ctx context.Context, instance string, rev int64) (*model.ReplState, error) {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	var last *model.ReplState
	for {
		rs, err := m.replState(ctx, instance)
		if err == nil && rs != nil {
			last = rs
			if rs.Rev >= rev && rs.Phase != model.ReplCopying {
				return rs, nil
			}
		}
		select {
		case <-ctx.Done():
			at := int64(0)
			if last != nil {
				at = last.Rev
			}
			return nil, fmt.Errorf("replication did not catch up with the fence within %s (at source revision %d of %d): the primary was unfenced", m.cfg.DrainTimeout, at, rev)
		case <-t.C:
		}
	}
}

// promote makes c primary here, re-reading its entry when it changed (a
// replicated batch may rewrite it) and deciding again.
func (m *Manager) promote(ctx context.Context, c *candidate) error {
	e := c.e
	for range 5 {
		d := e.d
		if d.Role != model.RoleSecondary || d.Primary != c.from {
			c.item.Status, c.item.Reason = model.FailoverRefused, fmt.Sprintf("its entry changed: primary %s, role %s, epoch %d", d.Primary, d.Role, d.Epoch)
			return nil
		}
		d.Secondary, d.Primary, d.Role = d.Primary, m.cfg.Region, model.RolePrimary
		d.Epoch++
		d.FailedOverAt = m.now().UTC()
		resp, ok, err := m.swap(ctx, e, d, clientv3.OpGet(store.ReplStateKey(d.Name)))
		if err != nil {
			return err
		}
		if ok {
			c.item.Status, c.item.Epoch = model.FailoverPromoted, d.Epoch
			if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 { // as of the promotion: final
				var rs model.ReplState
				if json.Unmarshal(kvs[0].Value, &rs) == nil {
					c.item.LastReplicatedRev, c.item.LastReplicatedTime = rs.Rev, rs.SourceTime
				}
			}
			return nil
		}
		if e, err = m.dir(ctx, d.Name); err != nil {
			return err
		}
		if e == nil {
			c.item.Status, c.item.Reason = model.FailoverRefused, "instance deleted"
			return nil
		}
	}
	return fmt.Errorf("%w: the directory entry of %s keeps changing", ErrUnavailable, c.e.d.Name)
}

func failoverReasons(items []model.FailoverItem) []string {
	var out []string
	for _, it := range items {
		if it.Status != model.FailoverRefused {
			return nil
		}
		out = append(out, it.Instance+": "+it.Reason)
	}
	return out
}

// peerFence asks region over the peer link to fence (undo: unfence) the
// instances, within PeerFenceTimeout.
func (m *Manager) peerFence(ctx context.Context, region string, names []string, undo bool) (*FenceResult, error) {
	if m.cfg.Peer == nil {
		return nil, fmt.Errorf("no peer link to %s", region)
	}
	ctx, cancel := context.WithTimeout(ctx, PeerFenceTimeout)
	defer cancel()
	body, err := json.Marshal(FenceRequest{Primary: region, Instances: names, NewPrimary: m.cfg.Region, Undo: undo})
	if err != nil {
		return nil, err
	}
	resp, err := m.cfg.Peer.Do(ctx, region, http.MethodPost, PathPeerFence, http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		json.Unmarshal(b, &e)
		return nil, fmt.Errorf("%s answered %d: %s", region, resp.StatusCode, string(bytes.TrimSpace([]byte(e.Message))))
	}
	var res FenceResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: fence answer: %w", region, err)
	}
	return &res, nil
}
