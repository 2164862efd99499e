package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
)

// Instances primary in another region. An instance's records are read and
// written only where it is the writable primary (the store fences reads
// like writes); elsewhere its pages would show the store's "not writable
// in this region". Instead they say where the instance is primary now and
// link to a console of that region when Config.RegionConsoles knows one.

// elsewhereInfo says where an instance is served, seen from this region.
type elsewhereInfo struct {
	Instance string
	Here     string // this node's region
	Primary  string // the region where the instance is primary now
	Role     string // its role here
	Epoch    uint64
	// Fenced: this region is the primary but fenced (a failover is under
	// way or did not complete).
	Fenced bool
	// URL is the same page on a console of Primary ("" when unknown).
	URL string
}

// whereServed returns where instance name is served when that is not
// this region, or nil when it is served here (or its entry is unreadable).
func (c *Console) whereServed(ctx context.Context, name, path string) *elsewhereInfo {
	v, err := c.cfg.Instances.Get(ctx, name)
	if err != nil {
		return nil
	}
	d := v.Dir
	e := &elsewhereInfo{Instance: v.Instance.Name, Here: c.cfg.RegionName, Primary: d.Primary, Role: d.Role, Epoch: d.Epoch}
	switch {
	case d.Primary == "" || c.cfg.RegionName == "":
		return nil
	case strings.EqualFold(d.Primary, c.cfg.RegionName):
		if d.Role == model.RolePrimary {
			return nil
		}
		e.Fenced = true
		return e
	}
	if base := c.regionConsole(d.Primary); base != "" {
		e.URL = base + path
	}
	return e
}

// regionConsole is the console base URL of region (no trailing slash),
// or "".
func (c *Console) regionConsole(region string) string {
	for r, u := range c.cfg.RegionConsoles {
		if strings.EqualFold(r, region) {
			if pu, err := url.Parse(u); err == nil && (pu.Scheme == "https" || pu.Scheme == "http") && pu.Host != "" {
				return strings.TrimSuffix(u, "/")
			}
		}
	}
	return ""
}

// elsewhere renders the "served in another region" page for a request
// about instance name that the store refused here; false when the
// instance is served here after all (the error is then shown as is).
func (c *Console) elsewhere(w http.ResponseWriter, r *http.Request, p *principal, name string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	path := r.URL.Path
	if r.Method != http.MethodGet { // the form's page, not its action
		path = "/instances/" + url.PathEscape(name)
	}
	e := c.whereServed(ctx, name, path)
	if e == nil {
		return false
	}
	if p == nil {
		p = &principal{}
	}
	c.renderInst(w, r, http.StatusConflict, "elsewhere", p, e.Instance+" is served in another region", e.Instance, e)
	return true
}
