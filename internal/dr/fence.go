package dr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence fences instances primary in this region: role fenced at the same
// epoch, in one transaction per instance compared on its directory entry,
// so no write of them commits here any more while replication carries on.
// It is idempotent: a fenced instance is reported with the revision of its
// fence. req.Undo lifts fences instead (role primary, same epoch).
//
// Instances that cannot be fenced (DR disabled, not primary here, another
// secondary than req.NewPrimary) are reported "refused" with the reason;
// when every named instance is refused the error wraps ErrRefused.
func (m *Manager) Fence(ctx context.Context, req FenceRequest) (*FenceResult, error) {
	return m.fence(ctx, req, "")
}

// fence is Fence on behalf of caller, a peer region ("" for an operator):
// a peer may only fence instances whose secondary it is.
func (m *Manager) fence(ctx context.Context, req FenceRequest, caller string) (*FenceResult, error) {
	if req.Primary != "" && req.Primary != m.cfg.Region {
		return nil, fmt.Errorf("%w: this region is %s, not %s", ErrInvalid, m.cfg.Region, req.Primary)
	}
	entries, err := m.fenceTargets(ctx, req, caller)
	if err != nil {
		return nil, err
	}
	res := &FenceResult{Region: m.cfg.Region, Items: []model.FenceItem{}}
	for _, t := range entries {
		it := model.FenceItem{Instance: t.name, Status: model.FenceRefused, Reason: t.reason}
		if t.e != nil && t.reason == "" {
			it, err = m.fenceOne(ctx, t.e, req, caller)
			if err != nil {
				return nil, err
			}
		}
		if it.Status == model.FenceRefused {
			m.log.Warn("fence refused", "instance", it.Instance, "caller", caller, "reason", it.Reason)
		} else {
			m.log.Info("instance "+it.Status, "instance", it.Instance, "epoch", it.Epoch, "source_rev", it.SourceRev, "caller", caller)
		}
		res.Items = append(res.Items, it)
	}
	return res, allRefused(len(req.Instances) > 0, fenceReasons(res.Items))
}

// target is an instance an operation is asked for: its entry, or why not.
type target struct {
	name   string
	e      *entry
	reason string
}

// fenceTargets lists the instances of a fence: the named ones, or every
// DR-enabled instance primary here (whose secondary is caller, if set).
func (m *Manager) fenceTargets(ctx context.Context, req FenceRequest, caller string) ([]target, error) {
	if len(req.Instances) > 0 {
		return m.named(ctx, req.Instances)
	}
	all, err := m.dirs(ctx)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, e := range all {
		d := e.d
		if !d.DREnabled || d.Primary != m.cfg.Region || (d.Role != model.RolePrimary && d.Role != model.RoleFenced) {
			continue
		}
		if (caller != "" && d.Secondary != caller) || (req.NewPrimary != "" && d.Secondary != req.NewPrimary) {
			continue
		}
		out = append(out, target{name: d.Name, e: e})
	}
	return out, nil
}

// named reads the entries of the named instances.
func (m *Manager) named(ctx context.Context, names []string) ([]target, error) {
	var out []target
	for _, n := range names {
		e, err := m.dir(ctx, n)
		if err != nil {
			return nil, err
		}
		t := target{name: n, e: e}
		if e == nil {
			t.reason = m.whereElse(ctx, n)
		}
		out = append(out, t)
	}
	return out, nil
}

// fenceOne fences (or unfences) one instance, re-reading its entry when
// it changed under the transaction.
func (m *Manager) fenceOne(ctx context.Context, e *entry, req FenceRequest, caller string) (model.FenceItem, error) {
	for range 5 {
		d := e.d
		it := model.FenceItem{Instance: d.Name, Epoch: d.Epoch, Role: d.Role, Status: model.FenceRefused}
		if why := m.whyNotFence(d, req, caller); why != "" {
			it.Reason = why
			return it, nil
		}
		from, to, status := model.RolePrimary, model.RoleFenced, model.FenceFenced
		if req.Undo {
			from, to, status = model.RoleFenced, model.RolePrimary, model.FenceUnfenced
		}
		it.Status = status
		if d.Role == to { // done before: idempotent
			it.SourceRev = e.modRev
			return m.withDataRev(ctx, it, req.Undo)
		}
		if d.Role != from {
			it.Status, it.Reason = model.FenceRefused, fmt.Sprintf("instance %s is %s here", d.Name, d.Role)
			return it, nil
		}
		d.Role = to
		resp, ok, err := m.swap(ctx, e, d)
		if err != nil {
			return it, err
		}
		if ok {
			it.Role, it.SourceRev = to, resp.Header.Revision
			return m.withDataRev(ctx, it, req.Undo)
		}
		if e, err = m.dir(ctx, d.Name); err != nil {
			return it, err
		}
		if e == nil {
			return model.FenceItem{Instance: d.Name, Status: model.FenceRefused, Reason: "instance deleted"}, nil
		}
	}
	return model.FenceItem{}, fmt.Errorf("%w: the directory entry of %s keeps changing", ErrUnavailable, e.d.Name)
}

// whyNotFence returns why d may not be fenced for caller, or "".
func (m *Manager) whyNotFence(d model.DirEntry, req FenceRequest, caller string) string {
	switch {
	case !d.DREnabled:
		return ErrResidency.Error()
	case d.Primary != m.cfg.Region:
		return fmt.Sprintf("instance %s is primary in %s (epoch %d), not in %s", d.Name, d.Primary, d.Epoch, m.cfg.Region)
	case caller != "" && caller != d.Secondary:
		return fmt.Sprintf("region %s is not the secondary of instance %s", caller, d.Name)
	case req.NewPrimary != "" && req.NewPrimary != d.Secondary:
		return fmt.Sprintf("the secondary of instance %s is %s, not %s", d.Name, d.Secondary, req.NewPrimary)
	}
	return ""
}

func fenceReasons(items []model.FenceItem) []string {
	var out []string
	for _, it := range items {
		if it.Status != model.FenceRefused {
			return nil
		}
		out = append(out, it.Instance+": "+it.Reason)
	}
	return out
}

// allRefused is the error of an operation on named instances that were
// all refused (reasons nil when one was not).
func allRefused(named bool, reasons []string) error {
	if !named || len(reasons) == 0 {
		return nil
	}
	if r, ok := strings.CutSuffix(reasons[0], ": "+ErrResidency.Error()); ok && len(reasons) == 1 {
		return fmt.Errorf("%w: %s: %w", ErrRefused, r, ErrResidency)
	}
	return refused("%s", strings.Join(reasons, "; "))
}

// FenceHandler serves PathPeerFence on the peer listener: the calling
// region (regionOf, nil: peer.RegionOf) fences instances it is the
// secondary of. The body is a FenceRequest, the answer a FenceResult;
// errors are in the DPS shape.
func (m *Manager) FenceHandler(regionOf func(*http.Request) string) http.Handler {
	if regionOf == nil {
		regionOf = peer.RegionOf
	}
	return apierr.Handler(m.log, func(w http.ResponseWriter, r *http.Request) error {
		caller := regionOf(r)
		if caller == "" {
			return apierr.New(apierr.CodeForbidden, "Only a region of the deployment may fence.")
		}
		var req FenceRequest
		if err := apierr.DecodeJSON(r, 0, &req, false); err != nil {
			return err
		}
		res, err := m.fence(r.Context(), req, caller)
		if err != nil {
			return APIError(err)
		}
		return apierr.JSON(w, http.StatusOK, res)
	})
}

// APIError maps an error of the package to the DPS error shape: 400
// invalid, 404 not found, 409 refused (with the reason), 503 otherwise.
func APIError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "dr: ")
	switch {
	case errors.Is(err, ErrInvalid):
		return apierr.Wrap(err, apierr.CodeBadArgument, "%s", msg)
	case errors.Is(err, ErrNotFound):
		return apierr.Wrap(err, apierr.CodeNotFound, "%s", msg)
	case errors.Is(err, ErrRefused):
		return apierr.Wrap(err, apierr.CodeConflict, "%s", msg)
	}
	return apierr.Wrap(err, apierr.CodeUnavailable, "%s", msg)
}

// withDataRev sets it.DataRev, the last revision that changed the fenced
// instance's prefix: the highest mod revision of its keys (one sorted
// read of the prefix, on the old primary, for a planned failover), or a
// later deletion found in the history up to the fence.
func (m *Manager) withDataRev(ctx context.Context, it model.FenceItem, undo bool) (model.FenceItem, error) {
	if undo {
		return it, nil
	}
	prefix := store.InstancePrefix(it.Instance)
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := m.kv.Get(rctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	cancel()
	if err != nil {
		return it, unavailable(err)
	}
	if len(resp.Kvs) > 0 {
		it.DataRev = resp.Kvs[0].ModRevision
	}
	if it.DataRev+1 >= it.SourceRev {
		return it, nil
	}
	hctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	evs, err := m.history(hctx, prefix, true, it.DataRev+1, it.SourceRev)
	if err != nil {
		// Compacted or unreadable: a trailing delete may be missed.
		m.log.Warn("fence: history after the last write unreadable", "instance", it.Instance, "err", err)
		return it, nil
	}
	for _, ev := range evs {
		if ev.Kv.ModRevision < it.SourceRev {
			it.DataRev = max(it.DataRev, ev.Kv.ModRevision)
		}
	}
	return it, nil
}

// whereElse explains why an instance this region does not hold cannot be
// acted on: a data-residency instance is never copied to other regions, so
// its failover is refused here with the residency reason, as in its own
// region. The other regions are asked over the peer link (best effort).
func (m *Manager) whereElse(ctx context.Context, name string) string {
	reason := fmt.Sprintf("instance %s does not exist in region %s", name, m.cfg.Region)
	if m.cfg.Peer == nil {
		return reason
	}
	ctx, cancel := context.WithTimeout(ctx, PeerFenceTimeout)
	defer cancel()
	for _, r := range m.cfg.Peer.Peers() {
		resp, err := m.cfg.Peer.Do(ctx, r, http.MethodGet, peer.PathPrefix+"locate-instance/"+url.PathEscape(name), nil, nil)
		if err != nil {
			continue
		}
		var loc struct {
			Region    string `json:"region"`
			DREnabled bool   `json:"drEnabled"`
		}
		ok := resp.StatusCode == http.StatusOK && json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&loc) == nil
		resp.Body.Close()
		if !ok {
			continue
		}
		if !loc.DREnabled {
			return fmt.Sprintf("%v: instance %s is kept in %s only", ErrResidency, name, loc.Region)
		}
		return fmt.Sprintf("%s (its primary is %s)", reason, loc.Region)
	}
	return reason
}
