// Package serviceapi serves the DPS service API (spec/dps-protocol.md §6,
// spec/wire-captures.md §6): individual enrollments, enrollment groups,
// bulk operations, queries with continuation, and registration states, as
// the official service SDKs speak it.
//
// One Handler serves every instance. Like Azure's
// {dpsName}.azure-devices-provisioning.net, the Host header chooses the
// instance: {instance}.{ServiceDomain}, port ignored, case-insensitive.
// Requests carry a SharedAccessSignature token of one of the instance's
// shared access policies, whose rights must cover the route.
//
// Every error is written in the DPS error shape with x-ms-error-code; no
// error leaves anything changed in the store.
//
// Decisions where DPS is silent or ambiguous:
//   - GET, PUT and query responses keep symmetric keys (Node users read
//     keys from getIndividualEnrollment); certificate text is omitted
//     there (info only, as DPS shows it) and returned by
//     attestationmechanism, which always returns the full mechanism.
//   - A policy lacking the route's right gets 401, like a bad token.
//   - If-Match on a missing record is 412; it never creates.
//   - Continuation tokens are base64url of the last returned id.
//   - Querying the registrations of an unknown group returns [].
package serviceapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// DefaultInstanceCacheTTL is how long an instance's configuration (its
// access policies) is reused between requests by default.
const DefaultInstanceCacheTTL = time.Second

// maxCachedInstances bounds the instance cache.
const maxCachedInstances = 4096

// Config configures a Handler.
type Config struct {
	// Store holds the instances and their records. Required.
	Store *store.Store
	// Enrollments is the enrollment logic; nil means enrollment.New(Store).
	Enrollments *enrollment.Service
	// ServiceDomain: instance N is served at host N.ServiceDomain (any
	// port), e.g. "localhost" in development. Required; no port.
	ServiceDomain string
	// Logger receives request failures; nil discards.
	Logger *slog.Logger
	// InstanceCacheTTL bounds how stale a cached instance configuration
	// may be (a revoked policy keeps working at most this long). Zero means
	// DefaultInstanceCacheTTL; negative disables the cache.
	InstanceCacheTTL time.Duration
	// MaxBody bounds request bodies (413 beyond); 0 means apierr.MaxBody
	// (96 KB, the DPS message limit).
	MaxBody int64
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
}

// Handler serves the service API of every instance. It is safe for
// concurrent use.
type Handler struct {
	st     *store.Store
	svc    *enrollment.Service
	suffix string // "." + lower-case ServiceDomain
	log    *slog.Logger
	ttl    time.Duration
	max    int64
	now    func() time.Time
	h      http.Handler

	mu    sync.Mutex
	cache map[string]cachedInstance // guarded by mu
}

type cachedInstance struct {
	in *model.Instance
	at time.Time
}

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("serviceapi: Config.Store is required")
	}
	d := strings.Trim(strings.ToLower(cfg.ServiceDomain), ".")
	if d == "" || strings.ContainsAny(d, ":/") {
		return nil, fmt.Errorf("serviceapi: Config.ServiceDomain %q must be a domain name without port", cfg.ServiceDomain)
	}
	h := &Handler{st: cfg.Store, svc: cfg.Enrollments, suffix: "." + d, log: cfg.Logger,
		ttl: cfg.InstanceCacheTTL, max: cfg.MaxBody, now: cfg.Now, cache: map[string]cachedInstance{}}
	if h.svc == nil {
		h.svc = enrollment.New(cfg.Store)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.ttl == 0 {
		h.ttl = DefaultInstanceCacheTTL
	}
	if h.max <= 0 {
		h.max = apierr.MaxBody
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.h = apierr.Handler(h.log, h.serve)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// serve resolves the instance, the route and the caller, then dispatches.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	in, err := h.instance(r.Context(), r.Host)
	if err != nil {
		return err
	}
	rt, err := parseRoute(r.Method, r.URL.EscapedPath())
	if err != nil {
		return err
	}
	if err := h.authorize(r, in, rt.right()); err != nil {
		return err
	}
	if err := checkAPIVersion(r); err != nil {
		return err
	}
	req := &request{h: h, w: w, r: r, inst: in.Name, rt: rt}
	switch rt.res {
	case resEnrollment:
		return enrollmentAPI(h.svc).serve(req)
	case resGroup:
		return groupAPI(h.svc).serve(req)
	}
	return req.registrations()
}

// instanceName extracts the instance from a Host header value.
func (h *Handler) instanceName(host string) (string, bool) {
	host = strings.TrimSuffix(strings.ToLower(hostOnly(host)), ".")
	name, ok := strings.CutSuffix(host, h.suffix)
	if !ok || name == "" || strings.Contains(name, ".") || len(name) > 63 {
		return "", false
	}
	return name, true
}

// instance returns the configuration of the instance the host names.
func (h *Handler) instance(ctx context.Context, host string) (*model.Instance, error) {
	name, ok := h.instanceName(host)
	if !ok {
		return nil, apierr.New(apierr.CodeInstanceNotFound, "Host %q names no provisioning service of this deployment.", truncate(host))
	}
	now := h.now()
	if h.ttl > 0 {
		h.mu.Lock()
		c, ok := h.cache[name]
		h.mu.Unlock()
		if ok && now.Sub(c.at) < h.ttl && now.Sub(c.at) >= 0 {
			return c.in, nil
		}
	}
	in, err := h.st.Instance(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierr.New(apierr.CodeInstanceNotFound, "Provisioning service %q does not exist.", name)
	}
	if err != nil {
		return nil, mapErr(err, route{})
	}
	if h.ttl > 0 {
		h.mu.Lock()
		if len(h.cache) >= maxCachedInstances {
			clear(h.cache)
		}
		h.cache[name] = cachedInstance{in: in, at: now}
		h.mu.Unlock()
	}
	return in, nil
}
