package controlapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/apierr"
)

// Deployment records (docs/deployments.md): an ARM-shaped
// Microsoft.Resources/deployments resource that `opendps deployment create`
// writes when it starts and when it ends, so that every operator of the
// region sees what was deployed, by whom it was changed, and how it ended.
// The deployment itself runs in the client (internal/deployment); the
// server keeps the record and owns its timestamps.
//
//	GET    D                 list of the resource group, newest first (at most 800)
//	PUT    D/{name}          create (201) or replace (200) the record
//	GET    D/{name}
//	DELETE D/{name}          (204)
//
// D = /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Resources/deployments.
// Records live in the region's etcd under /opendps/deploy/{sub}/{rg}/{name}
// (lower case), outside every instance prefix: they are not replicated.

const (
	deployPrefix    = "/opendps/deploy/"
	deploymentsPath = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Resources/deployments"
	deploymentType  = "Microsoft.Resources/deployments"
)

// maxDeploymentsList bounds a list to the newest records: ARM keeps at most
// 800 deployments per resource group. A variable for tests.
var maxDeploymentsList = 800

// Provisioning states of a deployment record.
var deploymentStates = []string{"Accepted", "Running", "Succeeded", "Failed", "Canceled"}

// deploymentNameRE is ARM's rule for deployment names (and for the
// subscription and resource-group segments of the key).
var deploymentNameRE = regexp.MustCompile(`^[-\w._()]{1,64}$`)

// deploymentRecord is the stored and served record. Everything the server
// does not interpret stays raw JSON.
type deploymentRecord struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Location   string           `json:"location,omitempty"`
	Properties deploymentFields `json:"properties"`
}

type deploymentFields struct {
	ProvisioningState string          `json:"provisioningState"`
	Mode              string          `json:"mode,omitempty"`
	Timestamp         time.Time       `json:"timestamp"` // last write (server clock)
	StartTime         time.Time       `json:"startTime"` // first write of this run (server clock)
	Duration          string          `json:"duration,omitempty"`
	CorrelationID     string          `json:"correlationId,omitempty"`
	TemplateHash      string          `json:"templateHash,omitempty"`
	Parameters        json.RawMessage `json:"parameters,omitempty"`
	Outputs           json.RawMessage `json:"outputs,omitempty"`
	OutputResources   json.RawMessage `json:"outputResources,omitempty"`
	ResourceChanges   json.RawMessage `json:"resourceChanges,omitempty"`
	Error             json.RawMessage `json:"error,omitempty"`
}

func (h *Handler) deploymentRoutes() {
	rt := &h.router
	rt.add(http.MethodGet, deploymentsPath, true, h.listDeployments)
	rt.add(http.MethodPut, deploymentsPath+"/{name}", true, h.putDeployment)
	rt.add(http.MethodGet, deploymentsPath+"/{name}", true, h.getDeployment)
	rt.add(http.MethodDelete, deploymentsPath+"/{name}", true, h.deleteDeployment)
}

// deploymentKey checks the path's segments and returns the record's key.
func (h *Handler) deploymentKey(p params, withName bool) (string, error) {
	if h.store == nil {
		return "", notFound("Deployment records are not kept by this node.")
	}
	segs := []string{p["sub"], p["rg"]}
	if withName {
		segs = append(segs, p["name"])
	}
	for _, s := range segs {
		if !deploymentNameRE.MatchString(s) {
			return "", badRequest("%q is not a valid name here: 1 to 64 letters, digits, '-', '_', '.', '(' or ')'.", clip(s))
		}
	}
	return deployPrefix + strings.ToLower(strings.Join(segs, "/")), nil
}

func deploymentID(p params) string {
	return "/subscriptions/" + p["sub"] + "/resourceGroups/" + p["rg"] + "/providers/" + deploymentType + "/" + p["name"]
}

func (h *Handler) putDeployment(w http.ResponseWriter, r *http.Request, p params) error {
	key, err := h.deploymentKey(p, true)
	if err != nil {
		return err
	}
	var in deploymentRecord
	if err := h.decode(r, &in, true); err != nil {
		return err
	}
	f := &in.Properties
	if !slices.Contains(deploymentStates, f.ProvisioningState) {
		return badRequest("properties.provisioningState must be one of %s.", strings.Join(deploymentStates, ", "))
	}
	var old deploymentRecord
	exists, err := h.store.Get(r.Context(), key, &old)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	f.Timestamp, f.StartTime, f.Duration = now, now, ""
	// The same run (a correlation id seen while the record was running)
	// keeps its start.
	if exists && old.Properties.CorrelationID == f.CorrelationID && f.CorrelationID != "" && !terminal(old.Properties.ProvisioningState) {
		f.StartTime = old.Properties.StartTime
	}
	if terminal(f.ProvisioningState) {
		f.Duration = isoDuration(now.Sub(f.StartTime))
	}
	in.ID, in.Name, in.Type = deploymentID(p), p["name"], deploymentType
	if err := h.putRecord(r.Context(), key, &in); err != nil {
		return err
	}
	status := http.StatusCreated
	if exists {
		status = http.StatusOK
	}
	return apierr.JSON(w, status, in)
}

func (h *Handler) putRecord(ctx context.Context, key string, rec *deploymentRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(b) > int(h.maxBody)*2 {
		return badRequest("The deployment record is larger than %d bytes.", h.maxBody*2)
	}
	return h.store.Put(ctx, key, string(b))
}

func terminal(state string) bool {
	return state == "Succeeded" || state == "Failed" || state == "Canceled"
}

// isoDuration renders d as an ISO 8601 duration, e.g. PT1.234S.
func isoDuration(d time.Duration) string {
	d = d.Round(time.Millisecond)
	return fmt.Sprintf("PT%sS", strings.TrimSuffix(fmt.Sprintf("%.3f", d.Seconds()), ".000"))
}

func (h *Handler) getDeployment(w http.ResponseWriter, r *http.Request, p params) error {
	key, err := h.deploymentKey(p, true)
	if err != nil {
		return err
	}
	var rec deploymentRecord
	ok, err := h.store.Get(r.Context(), key, &rec)
	if err != nil {
		return err
	}
	if !ok {
		return notFound("Deployment %q not found in resource group %s of subscription %s.", p["name"], p["rg"], p["sub"])
	}
	return apierr.JSON(w, http.StatusOK, rec)
}

func (h *Handler) deleteDeployment(w http.ResponseWriter, r *http.Request, p params) error {
	key, err := h.deploymentKey(p, true)
	if err != nil {
		return err
	}
	deleted, err := h.store.Delete(r.Context(), key)
	if err != nil {
		return err
	}
	if !deleted {
		return notFound("Deployment %q not found in resource group %s of subscription %s.", p["name"], p["rg"], p["sub"])
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listDeployments(w http.ResponseWriter, r *http.Request, p params) error {
	key, err := h.deploymentKey(p, false)
	if err != nil {
		return err
	}
	// Keys are in name order, so every record is read to find the newest.
	out := listBody[deploymentRecord]{Value: []deploymentRecord{}}
	after := ""
	for {
		page, err := h.store.List(r.Context(), key+"/", after, 100)
		if err != nil {
			return err
		}
		for _, v := range page.Values {
			var rec deploymentRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return errors.Join(errors.New("controlapi: a stored deployment record is not JSON"), err)
			}
			out.Value = append(out.Value, rec)
		}
		if after = page.Next; after == "" {
			break
		}
	}
	slices.SortStableFunc(out.Value, func(a, b deploymentRecord) int { return b.Properties.Timestamp.Compare(a.Properties.Timestamp) })
	if len(out.Value) > maxDeploymentsList {
		out.Value = out.Value[:maxDeploymentsList]
	}
	return apierr.JSON(w, http.StatusOK, out)
}
