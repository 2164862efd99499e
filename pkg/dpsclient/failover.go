package dpsclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opendps/opendps/internal/model"
)

// Types of the failover routes of the region API (docs/dr-design.md).
type (
	FailoverRequest = model.FailoverRequest
	FailoverReport  = model.FailoverReport
	FailoverItem    = model.FailoverItem
	FenceRequest    = model.FenceRequest
	FenceResult     = model.FenceResult
	FenceItem       = model.FenceItem
	LostWrites      = model.LostWrites
	LostWrite       = model.LostWrite
)

// Paths of the failover routes (internal/regionapi).
const (
	PathRegionFailover   = "/opendps/region/failover"
	PathRegionFence      = "/opendps/region/fence"
	PathRegionInstances  = "/opendps/region/instances"
	PathRegionLostWrites = "/opendps/region/lost-writes"
)

// unbounded returns c with an HTTP client without its overall timeout, for
// calls that may take long (a planned failover waits for replication to
// drain; a snapshot streams the whole region). Bound them with ctx.
func (c *Control) unbounded() *Control {
	cc := *c
	hc := *c.hc
	hc.Timeout = 0
	cc.hc = &hc
	return &cc
}

// Failover asks the region answering (the secondary side) to promote
// itself for req.From's instances. A refusal of every named instance is a
// *ControlError with status 409 and the reason.
func (c *Control) Failover(ctx context.Context, req FailoverRequest) (*FailoverReport, error) {
	var out FailoverReport
	_, err := c.unbounded().do(ctx, call{method: http.MethodPost, path: PathRegionFailover, body: req, out: &out})
	return &out, err
}

// InstanceFailover fails instance over to the region answering, planned
// (no loss: the primary is fenced and drained first) or not.
func (c *Control) InstanceFailover(ctx context.Context, instance string, planned, force bool) (*FailoverReport, error) {
	var out FailoverReport
	body := map[string]bool{"planned": planned, "force": force}
	_, err := c.unbounded().do(ctx, call{method: http.MethodPost, path: PathRegionInstances + "/" + url.PathEscape(instance) + "/failover", body: body, out: &out})
	return &out, err
}

// Fence fences instances primary in the region answering (the region
// being failed over from), so that it accepts no more writes for them.
func (c *Control) Fence(ctx context.Context, req FenceRequest) (*FenceResult, error) {
	var out FenceResult
	_, err := c.do(ctx, call{method: http.MethodPost, path: PathRegionFence, body: req, out: &out})
	return &out, err
}

// LostWrites lists the lost-writes reports kept in the region answering,
// of instance or ("") of every instance.
func (c *Control) LostWrites(ctx context.Context, instance string) ([]LostWrites, error) {
	var out struct {
		Reports []LostWrites `json:"reports"`
	}
	p := PathRegionLostWrites
	if instance != "" {
		p += "?instance=" + url.QueryEscape(instance)
	}
	_, err := c.do(ctx, call{method: http.MethodGet, path: p, out: &out})
	return out.Reports, err
}

// DeleteLostWrites removes the report of instance superseded at newEpoch.
func (c *Control) DeleteLostWrites(ctx context.Context, instance string, newEpoch uint64) error {
	p := PathRegionLostWrites + "/" + url.PathEscape(instance) + "/" + strconv.FormatUint(newEpoch, 10)
	_, err := c.do(ctx, call{method: http.MethodDelete, path: p})
	return err
}
