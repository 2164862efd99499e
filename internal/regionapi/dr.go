package regionapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/model"
)

// Failover routes (docs/dr-design.md, "Failover"):
//
//	POST   /opendps/region/failover                     {region, instances, planned, force, fencedDirectly} → model.FailoverReport
//	POST   /opendps/region/fence                        {primary, instances, newPrimary, undo} → model.FenceResult
//	POST   /opendps/region/instances/{name}/failover    {planned (default true), force} → model.FailoverReport
//	GET    /opendps/region/lost-writes[?instance=N]      {"reports": [model.LostWrites...]}
//	DELETE /opendps/region/lost-writes/{instance}/{epoch}
//
// Refusals (residency, a copy in progress, the cool-down, a planned
// failover that cannot drain) are 409 with the reason.
const (
	PathFailover   = "/opendps/region/failover"
	PathFence      = "/opendps/region/fence"
	PathInstances  = "/opendps/region/instances"
	PathLostWrites = "/opendps/region/lost-writes"
)

// DR is what the API needs of internal/dr.
type DR interface {
	Failover(ctx context.Context, req model.FailoverRequest) (*model.FailoverReport, error)
	Fence(ctx context.Context, req model.FenceRequest) (*model.FenceResult, error)
	LostWrites(ctx context.Context, instance string) ([]model.LostWrites, error)
	DeleteLostWrites(ctx context.Context, instance string, newEpoch uint64) error
}

var _ DR = (*dr.Manager)(nil)

// failoverTimeout bounds a failover: a planned one waits for the drain.
const failoverTimeout = dr.DefaultDrainTimeout + 30*time.Second

// LostWritesList is the answer of GET PathLostWrites.
type LostWritesList struct {
	Reports []model.LostWrites `json:"reports"`
}

type drHandler struct {
	dr      DR
	timeout time.Duration
}

func (h *handler) mountDR(handle func(string, apierr.HandlerFunc), d DR) {
	dh := &drHandler{dr: d, timeout: h.timeout}
	handle("POST "+PathFailover, dh.failover)
	handle("POST "+PathFence, dh.fence)
	handle("POST "+PathInstances+"/{name}/failover", dh.instanceFailover)
	handle("GET "+PathLostWrites, dh.lostWrites)
	handle("DELETE "+PathLostWrites+"/{instance}/{epoch}", dh.deleteLostWrites)
}

func (h *drHandler) failover(w http.ResponseWriter, r *http.Request) error {
	var req model.FailoverRequest
	if err := apierr.DecodeJSON(r, 0, &req, true); err != nil {
		return err
	}
	if req.From == "" {
		return apierr.New(apierr.CodeBadArgument, "Name the region to fail over from (\"region\").")
	}
	return h.runFailover(w, r, req)
}

func (h *drHandler) instanceFailover(w http.ResponseWriter, r *http.Request) error {
	body := struct {
		Planned *bool `json:"planned"`
		Force   bool  `json:"force"`
	}{}
	if err := apierr.DecodeJSON(r, 0, &body, false); err != nil {
		return err
	}
	req := model.FailoverRequest{Instances: []string{r.PathValue("name")}, Planned: true, Force: body.Force}
	if body.Planned != nil {
		req.Planned = *body.Planned
	}
	return h.runFailover(w, r, req)
}

func (h *drHandler) runFailover(w http.ResponseWriter, r *http.Request, req model.FailoverRequest) error {
	ctx, cancel := context.WithTimeout(r.Context(), failoverTimeout)
	defer cancel()
	rep, err := h.dr.Failover(ctx, req)
	if err != nil {
		return dr.APIError(err)
	}
	return apierr.JSON(w, http.StatusOK, rep)
}

func (h *drHandler) fence(w http.ResponseWriter, r *http.Request) error {
	var req model.FenceRequest
	if err := apierr.DecodeJSON(r, 0, &req, false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	res, err := h.dr.Fence(ctx, req)
	if err != nil {
		return dr.APIError(err)
	}
	return apierr.JSON(w, http.StatusOK, res)
}

func (h *drHandler) lostWrites(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	reps, err := h.dr.LostWrites(ctx, r.URL.Query().Get("instance"))
	if err != nil {
		return dr.APIError(err)
	}
	if reps == nil {
		reps = []model.LostWrites{}
	}
	return apierr.JSON(w, http.StatusOK, LostWritesList{Reports: reps})
}

func (h *drHandler) deleteLostWrites(w http.ResponseWriter, r *http.Request) error {
	epoch, err := strconv.ParseUint(r.PathValue("epoch"), 10, 64)
	if err != nil {
		return apierr.New(apierr.CodeBadArgument, "Epoch %q is not a number.", r.PathValue("epoch"))
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	if err := h.dr.DeleteLostWrites(ctx, r.PathValue("instance"), epoch); err != nil {
		return dr.APIError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
