package console

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
)

// Instance pages: the list, the create form and the Overview.

func (c *Console) home(w http.ResponseWriter, r *http.Request, p *principal) error {
	to := "/instances"
	if !p.Operator {
		to = "/instances/" + url.PathEscape(p.Instance)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

func (c *Console) instanceList(w http.ResponseWriter, r *http.Request, p *principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	var views []*instance.View
	if p.Operator {
		all, err := c.cfg.Instances.ListAll(ctx)
		if err != nil {
			return err
		}
		views = all
	} else {
		v, err := c.cfg.Instances.Get(ctx, p.Instance)
		if err != nil {
			return err
		}
		views = []*instance.View{v}
	}
	slices.SortFunc(views, func(a, b *instance.View) int { return strings.Compare(a.Instance.Name, b.Instance.Name) })
	c.render(w, r, http.StatusOK, "instances", p, "Instances", views)
	return nil
}

// regionChoice is a region of the create form.
type regionChoice struct {
	Name, Label string
	// OptOut: tenants may turn disaster recovery off (data residency)
	// here; otherwise Reason says why it is always on.
	OptOut   bool
	Reason   string
	Selected bool
}

type newInstanceData struct {
	Regions  []regionChoice
	Selected regionChoice
	Name     string
}

func (c *Console) regionChoices(selected string) ([]regionChoice, regionChoice) {
	cat := c.cfg.Catalog
	var optOut []string
	for _, r := range cat.All() {
		if r.DataResidencyAllowed {
			optOut = append(optOut, r.DisplayName)
		}
	}
	var out []regionChoice
	var sel regionChoice
	for _, r := range cat.All() {
		rc := regionChoice{Name: r.Name, Label: regionLabel(cat, r.Name), OptOut: r.DataResidencyAllowed,
			Selected: r.Name == selected}
		if !rc.OptOut {
			rc.Reason = drReason(cat, r, optOut)
		}
		if rc.Selected {
			sel = rc
		}
		out = append(out, rc)
	}
	slices.SortFunc(out, func(a, b regionChoice) int { return strings.Compare(a.Label, b.Label) })
	return out, sel
}

// drReason says why disaster recovery cannot be turned off in r.
func drReason(cat *regions.Catalog, r regions.Region, optOut []string) string {
	where := "Opting out (data residency) is offered only in " + strings.Join(optOut, " and ") + "."
	if r.PairedRegion == "" {
		return r.DisplayName + " does not allow opting out of disaster recovery. " + where
	}
	return r.DisplayName + " replicates every instance to its paired region " + regionLabel(cat, r.PairedRegion) +
		": disaster recovery is always on there. " + where
}

func (c *Console) newInstancePage(w http.ResponseWriter, r *http.Request, p *principal) error {
	sel := regions.Normalize(r.URL.Query().Get("region"))
	if _, err := c.cfg.Catalog.Lookup(sel); err != nil {
		sel = c.defaultRegion()
	}
	all, chosen := c.regionChoices(sel)
	c.render(w, r, http.StatusOK, "newinstance", p, "Create instance",
		newInstanceData{Regions: all, Selected: chosen, Name: r.URL.Query().Get("name")})
	return nil
}

// defaultRegion is the node's region, else the first in the catalog.
func (c *Console) defaultRegion() string {
	if _, err := c.cfg.Catalog.Lookup(c.cfg.RegionName); err == nil {
		return regions.Normalize(c.cfg.RegionName)
	}
	if all := c.cfg.Catalog.All(); len(all) > 0 {
		return all[0].Name
	}
	return ""
}

// createInstance creates an instance. The "dr" checkbox counts only where
// the region allows opting out; elsewhere it is disabled in the form and
// disaster recovery stays on whatever is sent.
func (c *Console) createInstance(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	reg, err := c.cfg.Catalog.Lookup(r.PostFormValue("region"))
	if err != nil {
		return badRequest("Choose a region of the list.")
	}
	residency := reg.DataResidencyAllowed && r.PostFormValue("dr") != "on"
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := c.cfg.Instances.Create(ctx, instance.Spec{Name: name, Location: reg.Name, EnableDataResidency: &residency})
	if err != nil {
		return err
	}
	return c.finish(w, r, "/instances/"+url.PathEscape(v.Instance.Name), "Instance "+v.Instance.Name+" created.")
}

// replInfo is an instance's replication as this region sees it.
type replInfo struct {
	// Stream: this region sends the instance (its primary);
	// State: this region receives it (its secondary).
	Stream *model.ReplStatus
	State  *model.ReplState
	Err    string
}

type overviewData struct {
	V        *instance.View
	DR       bool
	Stats    *instance.Stats
	StatsErr string
	Repl     replInfo
	// Elsewhere: the instance is not the writable primary here.
	Elsewhere *elsewhereInfo
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, p *principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := c.cfg.Instances.Get(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	d := overviewData{V: v, DR: v.Dir.DREnabled && !v.Instance.EnableDataResidency}
	if st, err := c.cfg.Instances.Stats(ctx, v.Instance.Name); err != nil {
		c.log.Warn("console: stats", "instance", v.Instance.Name, "err", err)
		d.StatsErr = "counts unavailable right now"
	} else {
		d.Stats = &st
	}
	if d.DR {
		d.Repl = c.replicationOf(ctx, v.Instance.Name)
	}
	d.Elsewhere = c.whereServed(ctx, v.Instance.Name, r.URL.Path)
	c.renderInst(w, r, http.StatusOK, "overview", p, v.Instance.Name, v.Instance.Name, d)
	return nil
}

// replicationOf finds instance's stream or copy in the region's report.
func (c *Console) replicationOf(ctx context.Context, name string) replInfo {
	var ri replInfo
	if c.cfg.Replication == nil {
		return ri
	}
	streams, incoming, err := c.cfg.Replication(ctx)
	if err != nil {
		c.log.Warn("console: replication report", "err", err)
		ri.Err = "replication state unavailable right now"
		return ri
	}
	for i := range streams {
		if streams[i].Instance == name {
			ri.Stream = &streams[i]
		}
	}
	for i := range incoming {
		if incoming[i].Instance == name {
			ri.State = &incoming[i]
		}
	}
	return ri
}

// deleteInstancePage asks the operator to confirm the deletion of an
// instance by typing its name (works without JavaScript).
func (c *Console) deleteInstancePage(w http.ResponseWriter, r *http.Request, p *principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := c.cfg.Instances.Get(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	d := overviewData{V: v, DR: v.Dir.DREnabled && !v.Instance.EnableDataResidency}
	if st, err := c.cfg.Instances.Stats(ctx, v.Instance.Name); err == nil {
		d.Stats = &st
	}
	c.renderInst(w, r, http.StatusOK, "deleteinstance", p, "Delete "+v.Instance.Name, v.Instance.Name, d)
	return nil
}

// deleteInstance deletes an instance and everything in it (`opendps
// instance delete`) once the form repeats its name.
func (c *Console) deleteInstance(w http.ResponseWriter, r *http.Request, p *principal) error {
	name := r.PathValue("name")
	if strings.TrimSpace(r.PostFormValue("confirmName")) != name {
		return badRequest("Type the instance's name, " + name + ", to confirm its deletion.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := c.cfg.Instances.Delete(ctx, name, r.PostFormValue("etag")); err != nil {
		return err
	}
	c.log.Info("console: instance deleted", "instance", name)
	return c.finish(w, r, "/instances", "Instance "+name+" deleted.")
}
