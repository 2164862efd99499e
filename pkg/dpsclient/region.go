package dpsclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opendps/opendps/internal/model"
)

// Types of the region API (docs/zones.md), usable outside this module.
type (
	RegionStatus     = model.RegionStatus
	RegionMember     = model.RegionMember
	RegionNode       = model.RegionNode
	AddMemberRequest = model.MemberAddRequest
	AddMemberResult  = model.MemberAddResult
)

// Paths of the region API (internal/regionapi).
const (
	PathRegion         = "/opendps/region"
	PathRegionMembers  = "/opendps/region/members"
	PathRegionSnapshot = "/opendps/region/snapshot"
)

// RegionStatus returns the status of the region of the node answering:
// nodes, members with zone and health, leader, zone redundancy.
func (c *Control) RegionStatus(ctx context.Context) (*RegionStatus, error) {
	var out RegionStatus
	_, err := c.do(ctx, call{method: http.MethodGet, path: PathRegion, out: &out})
	return &out, err
}

// RegionMembers returns the members of the region with their status.
func (c *Control) RegionMembers(ctx context.Context) ([]RegionMember, error) {
	var out model.MemberList
	_, err := c.do(ctx, call{method: http.MethodGet, path: PathRegionMembers, out: &out})
	return out.Members, err
}

// AddMember adds an etcd member at run time; the result says how to start
// its node.
func (c *Control) AddMember(ctx context.Context, req AddMemberRequest) (*AddMemberResult, error) {
	var out AddMemberResult
	_, err := c.do(ctx, call{method: http.MethodPost, path: PathRegionMembers, body: req, out: &out})
	return &out, err
}

// RemoveMember removes the member name (or hex id). force skips the
// checks that keep the region working.
func (c *Control) RemoveMember(ctx context.Context, name string, force bool) (*RegionMember, error) {
	var out RegionMember
	p := PathRegionMembers + "/" + url.PathEscape(name)
	if force {
		p += "?force=" + strconv.FormatBool(force)
	}
	_, err := c.do(ctx, call{method: http.MethodDelete, path: p, out: &out})
	return &out, err
}

// PromoteMember makes the learner name a voting member.
func (c *Control) PromoteMember(ctx context.Context, name string) (*RegionMember, error) {
	var out RegionMember
	_, err := c.do(ctx, call{method: http.MethodPost, path: PathRegionMembers + "/" + url.PathEscape(name) + "/promote", out: &out})
	return &out, err
}

// Snapshot streams an etcd snapshot of the region (taken by the member of
// the node answering) to w and returns its size. The snapshot ends with
// its SHA-256, which restore checks; a cut stream is an error. It is not
// bounded by the HTTP client's timeout: bound it with ctx.
func (c *Control) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+PathRegionSnapshot, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.unbounded().hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("dpsclient: control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		e := parseErrorAnswer(data)
		return 0, &ControlError{StatusCode: resp.StatusCode, Code: e.ErrorCode, Message: e.Message, TrackingID: e.TrackingID}
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("dpsclient: snapshot cut after %d bytes: %w", n, err)
	}
	return n, nil
}
