package console

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Lost-writes reports and fences (`opendps region lost-writes`, `region
// fence`): the operator's follow-up of an unplanned failover. A region that
// was primary and learns that a newer epoch superseded it keeps a report of
// the writes it accepted that never reached the new primary; the operator
// reads them, deals with them (nothing is merged automatically) and
// deletes the report.

// lostRow is a report without its writes, for the region view.
type lostRow struct {
	model.LostWrites
	Count int
}

// lostWritesOf returns the region's reports (of instance, or every one).
func (c *Console) lostWritesOf(ctx context.Context, instance string) ([]lostRow, error) {
	reps, err := c.cfg.DR.LostWrites(ctx, instance)
	if err != nil {
		return nil, err
	}
	out := make([]lostRow, 0, len(reps))
	for _, rep := range reps {
		n := len(rep.Writes)
		rep.Writes = nil
		out = append(out, lostRow{LostWrites: rep, Count: n})
	}
	return out, nil
}

// lostWritePage shows one report with its writes.
func (c *Console) lostWritesPage(w http.ResponseWriter, r *http.Request, p *principal) error {
	if c.cfg.DR == nil {
		return &pageError{Status: http.StatusNotFound, Msg: "This node runs no failover manager."}
	}
	inst := r.PathValue("instance")
	epoch, err := strconv.ParseUint(r.PathValue("epoch"), 10, 64)
	if err != nil {
		return badRequest("The epoch must be a number.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	reps, err := c.cfg.DR.LostWrites(ctx, inst)
	if err != nil {
		return err
	}
	for i := range reps {
		if reps[i].NewEpoch == epoch && strings.EqualFold(reps[i].Instance, inst) {
			c.render(w, r, http.StatusOK, "lostwrites", p, "Lost writes of "+reps[i].Instance+" (epoch "+r.PathValue("epoch")+")", &reps[i])
			return nil
		}
	}
	return &pageError{Status: http.StatusNotFound, Msg: "This region keeps no lost-writes report of " + inst + " at epoch " + r.PathValue("epoch") + " (deleted, or kept by another region: the old primary keeps it)."}
}

// deleteLostWrites deletes a report once the form confirms it was dealt
// with.
func (c *Console) deleteLostWrites(w http.ResponseWriter, r *http.Request, p *principal) error {
	if c.cfg.DR == nil {
		return &pageError{Status: http.StatusNotFound, Msg: "This node runs no failover manager."}
	}
	inst := r.PathValue("instance")
	epoch, err := strconv.ParseUint(r.PathValue("epoch"), 10, 64)
	if err != nil {
		return badRequest("The epoch must be a number.")
	}
	if r.PostFormValue("dealtWith") != "on" {
		return badRequest("Check that the writes of the report were dealt with before deleting it.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := c.cfg.DR.DeleteLostWrites(ctx, inst, epoch); err != nil {
		return err
	}
	c.log.Info("console: lost-writes report deleted", "instance", inst, "new_epoch", epoch)
	return c.finish(w, r, "/regions#lost-writes", "The lost-writes report of "+inst+" at epoch "+r.PathValue("epoch")+" was deleted.")
}

// fence fences (or, with undo, unfences) instances primary in this region
// (`opendps region fence`): one named instance, or every DR-enabled one.
func (c *Console) fence(w http.ResponseWriter, r *http.Request, p *principal) error {
	if c.cfg.DR == nil {
		return &pageError{Status: http.StatusNotFound, Msg: "This node runs no failover manager."}
	}
	undo := r.PostFormValue("undo") == "on"
	req := model.FenceRequest{Undo: undo}
	if inst := strings.TrimSpace(r.PostFormValue("instance")); inst != "" {
		req.Instances = []string{inst}
	} else if r.PostFormValue("all") != "on" {
		return badRequest("Name the instance to fence, or check \"every instance primary here\".")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	res, err := c.cfg.DR.Fence(ctx, req)
	if err != nil && res == nil {
		return err
	}
	c.log.Info("console fence", "instances", req.Instances, "undo", undo)
	var parts []string
	for _, it := range res.Items {
		s := it.Instance + ": " + it.Status
		if it.Reason != "" {
			s += " (" + it.Reason + ")"
		}
		parts = append(parts, s)
	}
	msg := "Nothing to fence: no DR-enabled instance is primary in this region."
	if len(parts) > 0 {
		msg = "Fence" + map[bool]string{true: " lifted", false: ""}[undo] + ": " + strings.Join(parts, "; ") + "."
	}
	return c.finish(w, r, "/regions#fence", msg)
}

// lostWritesPath is the page of a report.
func lostWritesPath(inst string, epoch uint64) string {
	return "/regions/lost-writes/" + url.PathEscape(inst) + "/" + strconv.FormatUint(epoch, 10)
}
