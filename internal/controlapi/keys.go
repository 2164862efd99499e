package controlapi

import (
	"net/http"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
)

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, p params) error {
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, listBody[policyOut]{Value: renderPolicies(in.AuthorizationPolicies, true)})
}

func (h *Handler) listKeysForName(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	k, err := h.m.Keys(r.Context(), p["name"], p["keyName"])
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, renderPolicy(k, true))
}

// regenerateBody is {"key":"primary|secondary"}.
type regenerateBody struct {
	Key string `json:"key"`
}

func (h *Handler) regenerateKey(w http.ResponseWriter, r *http.Request, p params) error {
	var b regenerateBody
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	k, err := h.m.RegenerateKey(r.Context(), p["name"], p["keyName"], b.Key)
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, renderPolicy(k, true))
}

// policyBody is {"rights":"EnrollmentRead, EnrollmentWrite"}.
type policyBody struct {
	Rights string `json:"rights"`
}

// putPolicy adds a policy (201, with its new keys) or changes its rights
// (200). If-None-Match: * refuses to change an existing policy (412).
func (h *Handler) putPolicy(w http.ResponseWriter, r *http.Request, p params) error {
	var b policyBody
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	createOnly := strings.TrimSpace(r.Header.Get("If-None-Match")) == "*"
	k, created, err := h.m.SetPolicy(r.Context(), p["name"], p["keyName"], b.Rights, createOnly)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return apierr.JSON(w, status, renderPolicy(k, true))
}

func (h *Handler) deletePolicy(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	if err := h.m.RemovePolicy(r.Context(), p["name"], p["keyName"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) listHubs(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	hubs, err := h.m.Hubs(r.Context(), p["name"])
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, listBody[hubJSON]{Value: renderHubs(hubs)})
}

// putHub links (201) or updates (200) the hub of the path's host name; the
// body is one iotHubs entry, whose connection string must name that host.
// Without a connection string (or with its key masked) the linked hub's
// stored one is kept, so weight, location and applyAllocationPolicy can be
// changed alone.
func (h *Handler) putHub(w http.ResponseWriter, r *http.Request, p params) error {
	var b hubJSON
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	if strings.TrimSpace(b.ConnectionString) == "" { // change weight/location/policy flag only
		b.ConnectionString = "HostName=" + p["hostName"] + ";SharedAccessKey=****"
	}
	if host := connStringHost(b.ConnectionString); host != "" && !strings.EqualFold(host, p["hostName"]) {
		return badRequest("The connection string is for hub %q, not %q.", clip(host), clip(p["hostName"]))
	}
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	hub, created, err := h.m.AddHub(r.Context(), p["name"], hubSpec(b))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return apierr.JSON(w, status, renderHub(hub))
}

// connStringHost returns the HostName of a connection string, "" if none.
func connStringHost(cs string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "HostName") {
			return v
		}
	}
	return ""
}

func (h *Handler) deleteHub(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	if err := h.m.RemoveHub(r.Context(), p["name"], p["hostName"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
