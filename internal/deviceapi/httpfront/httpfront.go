// Package httpfront serves the DPS device runtime API over HTTPS
// (spec/dps-protocol.md §2, spec/wire-captures.md §3) on top of the
// provisioning engine (engine.Device):
//
//	PUT  /{idScope}/registrations/{registrationId}/register?api-version=...  → 202
//	GET  /{idScope}/registrations/{registrationId}/operations/{operationId}  → 202 assigning, 200 terminal
//	POST /{idScope}/registrations/{registrationId}                           → 200 DeviceRegistrationResult
//
// The handler parses and validates the request, hands the engine an
// engine.Request (path ids, the Authorization header verbatim, the TLS
// client chain, the client IP) and renders the answer. Every answer, errors
// included, is JSON with Content-Type "application/json; charset=utf-8" and
// an x-ms-request-id header; errors are in the DPS shape with
// x-ms-error-code (internal/apierr), and a panic becomes a DPS-shaped 500.
//
// Decisions where DPS is silent or ambiguous:
//   - A missing or empty api-version is accepted (devices always send one;
//     §1.3 keeps the 400 for the service API); a malformed one is 400001.
//   - Register answers 202 even when the status is terminal (the C# and
//     IoT Edge clients accept nothing else, §2.4), with Location pointing
//     at the register URL as real DPS does: https://{Host}/{idScope}/
//     registrations/{registrationId}/register, without query. The scheme
//     is always https: the device API is HTTPS only (§1.1).
//   - Retry-After is an integer number of seconds; every "assigning"
//     answer carries one (DefaultRetryAfter when the engine gave none).
//   - "unassigned" never reaches a device (§2.4): it is logged as an engine
//     bug and sent as "assigning". An "assigning" answer without
//     registrationState gets {registrationId, status:"assigning"}, which
//     the IoT Edge client needs.
//   - A malformed ID scope or registration id is 400 without calling the
//     engine; a well-formed scope that names no instance is the engine's
//     404. Ids are passed to the engine as sent (case preserved, percent-
//     decoded); the engine compares them case-insensitively.
//   - A body registrationId that differs from the path's (ignoring case)
//     is 400 (§2.3). forceRegistration is accepted and ignored (§2.1).
//   - The status GET ignores any body (the Node SDK sends "{}").
//   - The client address is the TCP peer; X-Forwarded-For is not trusted.
//   - No Strict-Transport-Security header: on a development host it would
//     pin every port of "localhost" to HTTPS in browsers.
package httpfront

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrConfig is returned by New, wrapped, for an invalid Config.
var ErrConfig = errors.New("httpfront: invalid config")

// Config configures the handler New returns.
type Config struct {
	// Engine answers the device operations. Required. It is called
	// concurrently, once per request, with the request's context.
	Engine engine.Device
	// Log receives request failures (Error) and per-request traces
	// (Debug); nil discards.
	Log *slog.Logger
	// MaxBody bounds request bodies in bytes (413 beyond). Zero means
	// DefaultMaxBody (96 KB); negative is invalid.
	MaxBody int64
	// Registerer receives the request metrics. Nil means
	// prometheus.DefaultRegisterer. Several handlers may share one
	// Registerer: they then share the metrics.
	Registerer prometheus.Registerer
}

// handler serves the device API; it holds no per-request state and is
// safe for concurrent use.
type handler struct {
	engine  engine.Device
	log     *slog.Logger
	maxBody int64
	metrics *metrics
}

// New returns the device API handler. It is safe for concurrent use.
func New(cfg Config) (http.Handler, error) {
	if cfg.Engine == nil {
		return nil, fmt.Errorf("%w: Engine is required", ErrConfig)
	}
	if cfg.MaxBody < 0 {
		return nil, fmt.Errorf("%w: MaxBody %d is negative", ErrConfig, cfg.MaxBody)
	}
	h := &handler{engine: cfg.Engine, log: cfg.Log, maxBody: cfg.MaxBody}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBody
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("httpfront: metrics: %w", err)
	}
	h.metrics = m
	return h, nil
}

// ServeHTTP routes one request, writes its answer (errors through
// apierr) and records metrics.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	reqID := apierr.RequestID(r.Context())
	if reqID == "" {
		reqID = uuid.NewString()
		r = r.WithContext(apierr.WithRequestID(r.Context(), reqID)) // apierr.Write's trackingId
	}
	sw.Header().Set(headerRequestID, reqID)
	rt, rerr := parseRoute(r.Method, r.URL.EscapedPath())
	apierr.Handler(h.log, func(w http.ResponseWriter, r *http.Request) error {
		if rerr != nil {
			return rerr
		}
		return h.serve(w, r, rt)
	}).ServeHTTP(sw, r)
	d := time.Since(start)
	h.metrics.observe(rt.kind, sw.code(), d)
	// No registration id or scope: the request may be one this node only
	// forwards (data residency, docs/dr.md); the serving engine logs them.
	h.log.Debug("device request", "route", rt.kind.String(), "status", sw.code(), "request_id", reqID,
		"client_request_id", clip(r.Header.Get(headerClientRequestID)), "duration", d)
}

// serve validates the request's query and ids, then runs its route.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, rt route) error {
	if err := checkAPIVersion(r.URL.RawQuery); err != nil {
		return err
	}
	if err := validateScope(rt.scope); err != nil {
		return err
	}
	if err := validateRegistrationID(rt.regID); err != nil {
		return err
	}
	switch rt.kind {
	case routeRegister:
		return h.register(w, r, rt)
	case routeOperationStatus:
		return h.operationStatus(w, r, rt)
	case routeRegistrationStatus:
		return h.registrationStatus(w, r, rt)
	}
	return noRoute(r.Method, r.URL.EscapedPath()) // unreachable: parseRoute matched
}

// statusWriter records the status code for metrics. Unwrap lets
// http.ResponseController reach the underlying writer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// code is the status written, 200 when the handler wrote nothing.
func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
