// Package regionapi serves the region operations of the control API
// (operator token required; the node mounts it behind its token check):
//
//	GET    /opendps/region                          status: nodes, members, zones, leader, health, zone redundancy
//	GET    /opendps/region/members                  {"members": [...]}
//	POST   /opendps/region/members                  add a member: {"name", "peerURL", "zone", "learner"} → 201 with the new node's flags
//	DELETE /opendps/region/members/{name}?force=true remove a member
//	POST   /opendps/region/members/{name}/promote   make a learner vote
//	POST   /opendps/region/snapshot                 stream an etcd snapshot (application/octet-stream)
//	...    /opendps/region/{failover,fence,instances/{name}/failover,lost-writes}: disaster recovery (dr.go)
//	GET    /opendps/region/replication              replication streams and copies (replication.go)
//
// Errors are in the DPS shape (internal/apierr): 400 for a malformed
// request or an external cluster, 404 for an unknown member, 409 for a
// member that exists or a change refused because it would break the region
// (the message says why), 503 when etcd cannot answer.
package regionapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/region"
)

// Paths of the API (pkg/dpsclient repeats them; a test keeps them equal).
const (
	PathStatus   = "/opendps/region"
	PathMembers  = "/opendps/region/members"
	PathSnapshot = "/opendps/region/snapshot"
)

// Region is what the API needs of internal/region.
type Region interface {
	Status(ctx context.Context) (*region.Status, error)
	Add(ctx context.Context, req region.AddRequest) (*region.AddResult, error)
	Remove(ctx context.Context, name string, force bool) (*region.Member, error)
	Promote(ctx context.Context, name string) (*region.Member, error)
	Snapshot(ctx context.Context) (io.ReadCloser, error)
}

var _ Region = (*region.Region)(nil)

// Config configures the handler.
type Config struct {
	// Region answers. Required.
	Region Region
	// Log receives failures; nil discards.
	Log *slog.Logger
	// Timeout bounds the operations other than the snapshot and failover
	// (0: 15s).
	Timeout time.Duration
	// DR serves failover, fencing and lost-writes reports (dr.go); nil:
	// those routes answer 404.
	DR DR
	// Replication reports replication (replication.go); nil: 404.
	Replication ReplicationFunc
}

// New returns the handler of the region API. It is safe for concurrent use.
func New(cfg Config) (http.Handler, error) {
	if cfg.Region == nil {
		return nil, errors.New("regionapi: config: Region is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	h := &handler{r: cfg.Region, log: cfg.Log, timeout: cfg.Timeout}
	mux := http.NewServeMux()
	handle := func(pattern string, f apierr.HandlerFunc) { mux.Handle(pattern, apierr.Handler(cfg.Log, f)) }
	handle("GET "+PathStatus, h.status)
	handle("GET "+PathMembers, h.list)
	handle("POST "+PathMembers, h.add)
	handle("DELETE "+PathMembers+"/{name}", h.remove)
	handle("POST "+PathMembers+"/{name}/promote", h.promote)
	handle("POST "+PathSnapshot, h.snapshot)
	if cfg.DR != nil {
		h.mountDR(handle, cfg.DR)
	}
	if cfg.Replication != nil {
		h.mountReplication(handle, cfg.Replication)
	}
	handle(PathStatus+"/", func(w http.ResponseWriter, r *http.Request) error {
		return apierr.New(apierr.CodeNotFound, "No route for %s %s.", r.Method, r.URL.Path)
	})
	return mux, nil
}

type handler struct {
	r       Region
	log     *slog.Logger
	timeout time.Duration
}

func (h *handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.timeout)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.r.Status(ctx)
	if err != nil {
		return toAPI(err)
	}
	return apierr.JSON(w, http.StatusOK, st)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.r.Status(ctx)
	if err != nil {
		return toAPI(err)
	}
	return apierr.JSON(w, http.StatusOK, model.MemberList{Members: st.Members})
}

func (h *handler) add(w http.ResponseWriter, r *http.Request) error {
	var req region.AddRequest
	if err := apierr.DecodeJSON(r, 0, &req, true); err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	res, err := h.r.Add(ctx, req)
	if err != nil {
		return toAPI(err)
	}
	h.log.Info("member added", "member", req.Name, "peer_url", req.PeerURL, "zone", req.Zone, "learner", req.Learner)
	return apierr.JSON(w, http.StatusCreated, res)
}

func (h *handler) remove(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	m, err := h.r.Remove(ctx, r.PathValue("name"), force)
	if err != nil {
		return toAPI(err)
	}
	h.log.Info("member removed", "member", m.Name, "id", m.ID, "force", force)
	return apierr.JSON(w, http.StatusOK, m)
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := h.ctx(r)
	defer cancel()
	m, err := h.r.Promote(ctx, r.PathValue("name"))
	if err != nil {
		return toAPI(err)
	}
	h.log.Info("member promoted", "member", m.Name, "id", m.ID)
	return apierr.JSON(w, http.StatusOK, m)
}

// snapshot streams the snapshot. Once the first byte is written an error
// can only cut the stream: the client checks the hash at the end (restore
// refuses a truncated file).
func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) error {
	rc, err := h.r.Snapshot(r.Context())
	if err != nil {
		return toAPI(err)
	}
	defer rc.Close()
	// A snapshot of a large region takes a while: lift the server's write
	// deadline for this response.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="opendps.snapshot.db"`)
	w.WriteHeader(http.StatusOK)
	if n, err := io.Copy(w, rc); err != nil {
		h.log.Error("snapshot stream cut", "bytes", n, "err", err)
		panic(http.ErrAbortHandler) // the client sees a broken stream, not a short file that looks whole
	}
	return nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, apierr.New(apierr.CodeBadArgument, "Query parameter %s=%q is not a boolean.", name, v)
	}
	return b, nil
}

// toAPI maps region errors to API errors; messages are for operators.
func toAPI(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, region.ErrInvalid), errors.Is(err, region.ErrExternal):
		return apierr.Wrap(err, apierr.CodeBadArgument, "%s", msg)
	case errors.Is(err, region.ErrNotFound):
		return apierr.Wrap(err, apierr.CodeNotFound, "%s", msg)
	case errors.Is(err, region.ErrExists), errors.Is(err, region.ErrRefused):
		return apierr.Wrap(err, apierr.CodeConflict, "%s", msg)
	}
	return apierr.Wrap(err, apierr.CodeUnavailable, "%s", fmt.Sprintf("The region could not answer: %v", err))
}
