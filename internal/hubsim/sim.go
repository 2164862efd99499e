// Package hubsim simulates the registry REST API of Azure IoT hubs (device
// identities and twins, api-version 2021-04-12), for development
// deployments and tests. One Sim serves many hubs on one listener, routed
// by the Host header; each hub has one policy (iothubowner by default) whose
// SAS tokens it checks as IoT Hub does, and answers errors in IoT Hub's
// shape, so both package hub and the official azure-iothub Node SDK work
// against it unchanged.
//
// State is in memory and, with Config.StateFile, also in a JSON file
// rewritten after every change, so a restarted dev deployment keeps its
// hubs, keys and identities.
//
// Example:
//
//	h := hubsim.NewHubConfig("hub1.localhost")
//	sim, _ := hubsim.New(hubsim.Config{Hubs: []hubsim.HubConfig{h}})
//	tlsConf, _ := hubsim.TLSConfig(ca, sim)
//	srv, _ := hubsim.Listen(sim, "127.0.0.1:0", tlsConf)
//	defer srv.Close()
//	connStr := h.ConnectionStringPort(srv.Port())
//
// All methods of Sim are safe for concurrent use.
package hubsim

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/sas"
)

// maxBody bounds a request body (IoT Hub's own limit for a twin is 32 KiB;
// a device identity is smaller).
const maxBody = 256 << 10

// Fault is how a hub misbehaves, for tests of unhealthy-hub handling.
type Fault int

const (
	// FaultNone: the hub works.
	FaultNone Fault = iota
	// FaultUnavailable: every request gets 503 ServiceUnavailable.
	FaultUnavailable
	// FaultReset: every request is aborted without an answer (the HTTP/1
	// connection is closed, an HTTP/2 stream is reset).
	FaultReset
)

// Sim is the simulator, an http.Handler. Create it with New.
type Sim struct {
	log       *slog.Logger
	now       func() time.Time
	stateFile string

	saveMu sync.Mutex // serialises saves; taken before mu
	mu     sync.Mutex
	hubs   map[string]*hubState // guarded by mu; keyed by normHost(HostName)
	dirty  bool                 // guarded by mu: state changed since the last save
	timer  *time.Timer          // guarded by mu: pending save, nil when none
	delay  time.Duration        // guarded by mu: current save delay (adapts to the cost of a save)
}

// saveDelay batches state-file writes: at most one per saveDelay, so that a
// load test does not rewrite the whole file on every identity it creates.
const saveDelay = 500 * time.Millisecond

// markDirtyLocked schedules a save of the state file. s.mu must be held.
func (s *Sim) markDirtyLocked() {
	if s.stateFile == "" {
		return
	}
	s.dirty = true
	if s.timer == nil {
		s.timer = time.AfterFunc(max(saveDelay, s.delay), func() { s.Flush() })
	}
}

// Flush writes pending state changes to the state file now. Server.Close
// calls it; it is safe to call at any time.
func (s *Sim) Flush() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if !s.dirty {
		return nil
	}
	s.dirty = false
	start := time.Now()
	snap := s.snapshotLocked()
	s.mu.Unlock()
	err := s.writeState(snap)
	s.mu.Lock()
	// Keep saving below about 2% of the time, so a big state (a load
	// test's devices) saves less often.
	s.delay = 50 * time.Since(start)
	return err
}

// hubState is one hub. Every field is guarded by Sim.mu.
type hubState struct {
	cfg     HubConfig
	fault   Fault
	seq     uint64 // source of device etags
	lastGen int64  // last generationId handed out
	devices map[string]*record
}

var _ http.Handler = (*Sim)(nil)

// New validates cfg, restores StateFile if it exists, and returns a Sim.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sim{log: cfg.Logger, now: cfg.Now, stateFile: cfg.StateFile, hubs: map[string]*hubState{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	for _, h := range cfg.Hubs {
		s.addHubLocked(h)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s, s.saveLocked()
}

// AddHub adds a hub, or replaces the policy of an existing one (keeping its
// identities).
func (s *Sim) AddHub(h HubConfig) error {
	if err := h.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addHubLocked(h)
	return s.saveLocked()
}

// addHubLocked needs s.mu held, or s not yet shared.
func (s *Sim) addHubLocked(h HubConfig) {
	h.KeyName = h.keyName()
	n := normHost(h.HostName)
	if hs, ok := s.hubs[n]; ok {
		hs.cfg = h
		return
	}
	s.hubs[n] = &hubState{cfg: h, devices: map[string]*record{}}
}

// HasHub reports whether host (port and case ignored) is a simulated hub.
// It fits pki.NewMinter's allow function.
func (s *Sim) HasHub(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.hubs[normHost(host)]
	return ok
}

// Hubs returns the hubs, sorted by host name.
func (s *Sim) Hubs() []HubConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]HubConfig, 0, len(s.hubs))
	for _, h := range s.hubs {
		out = append(out, h.cfg)
	}
	slices.SortFunc(out, func(a, b HubConfig) int { return strings.Compare(a.HostName, b.HostName) })
	return out
}

// SetDown makes hub answer 503 to everything (down) or work again.
func (s *Sim) SetDown(host string, down bool) error {
	f := FaultNone
	if down {
		f = FaultUnavailable
	}
	return s.SetFault(host, f)
}

// SetFault sets how hub misbehaves; FaultNone restores it. Faults are not
// persisted.
func (s *Sim) SetFault(host string, f Fault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hubs[normHost(host)]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownHub, host)
	}
	h.fault = f
	return nil
}

// ServeHTTP routes by the Host header, then checks faults, then the SAS
// token, then serves the registry API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := normHost(r.Host)
	log := s.log.With("hub", host, "method", r.Method, "path", r.URL.Path)
	rep, err := s.serve(r, host, log)
	if err != nil {
		e, isAPI := err.(*apiError)
		if !isAPI {
			e = errorf(http.StatusInternalServerError, "ServerError", "internal error")
		}
		log.Debug("hubsim request failed", "status", e.status, "code", e.code, "err", err)
		writeError(w, e, s.now())
		return
	}
	log.Debug("hubsim request", "status", rep.status)
	if rep.etag != "" {
		w.Header().Set("ETag", `"`+rep.etag+`"`)
	}
	if rep.body == nil {
		w.WriteHeader(rep.status)
		return
	}
	writeJSON(w, rep.status, rep.body)
}

// snapshot returns the policy and fault of hub host.
func (s *Sim) snapshot(host string) (cfg HubConfig, fault Fault, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hubs[host]
	if !ok {
		return HubConfig{}, FaultNone, false
	}
	return h.cfg, h.fault, true
}

// reply is a successful answer.
type reply struct {
	status int
	body   any    // nil: no body
	etag   string // "" : no ETag header
}

// call is a parsed registry request.
type call struct {
	method  string
	kind    string // "devices" or "twins"
	id      string // "" for the collection
	ifMatch string // raw If-Match header
	query   url.Values
	body    []byte
}

func (s *Sim) serve(r *http.Request, host string, log *slog.Logger) (reply, error) {
	cfg, fault, known := s.snapshot(host)
	if !known {
		return reply{}, errorf(http.StatusNotFound, codeIotHubNotFound, "IoT hub %s not found", host)
	}
	switch fault {
	case FaultUnavailable:
		return reply{}, errorf(http.StatusServiceUnavailable, codeServiceUnavailable, "the hub is down (simulated)")
	case FaultReset:
		panic(http.ErrAbortHandler)
	}
	if err := s.authorize(cfg, r.Header.Get("Authorization")); err != nil {
		log.Debug("hubsim unauthorized", "reason", err)
		return reply{}, errorf(http.StatusUnauthorized, codeUnauthorized, "Unauthorized")
	}
	c, err := parseCall(r)
	if err != nil {
		return reply{}, err
	}
	return s.dispatch(host, c)
}

// authorize checks a SAS token for hub cfg: sr is the host name, with or
// without port and path, compared case-insensitively; skn is the policy;
// the signature and expiry hold.
func (s *Sim) authorize(cfg HubConfig, header string) error {
	tok, err := sas.Parse(header)
	if err != nil {
		return err
	}
	if !strings.EqualFold(tok.KeyName, cfg.KeyName) {
		return fmt.Errorf("%w: %q", sas.ErrKeyName, tok.KeyName)
	}
	resHost, _, _ := strings.Cut(tok.Resource, "/")
	if normHost(resHost) != normHost(cfg.HostName) {
		return fmt.Errorf("%w: sr=%q", sas.ErrAudience, tok.Resource)
	}
	if !tok.VerifyBase64(cfg.Key) {
		return sas.ErrSignature
	}
	return tok.CheckExpiry(s.now(), sas.DefaultSkew)
}

// parseCall splits the path into kind and id (unescaping the id segment
// itself, so an escaped '/' stays in the id) and reads the body.
func parseCall(r *http.Request) (call, error) {
	segs := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	c := call{method: r.Method, kind: strings.ToLower(segs[0]), ifMatch: r.Header.Get("If-Match"), query: r.URL.Query()}
	if (c.kind != "devices" && c.kind != "twins") || len(segs) > 2 {
		return c, errorf(http.StatusNotFound, codeInvalidResource, "the resource %s is not supported by this simulator", r.URL.Path)
	}
	if len(segs) == 2 {
		id, err := url.PathUnescape(segs[1])
		if err != nil {
			return c, errorf(http.StatusBadRequest, codeArgumentInvalid, "invalid escaping in the device ID")
		}
		c.id = id
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return c, errorf(http.StatusBadRequest, codeArgumentInvalid, "reading the body: %v", err)
	}
	if len(body) > maxBody {
		return c, errorf(http.StatusRequestEntityTooLarge, codeRequestEntityTooBig, "the body is larger than %d bytes", maxBody)
	}
	c.body = body
	return c, nil
}

// dispatch runs c against hub host under s.mu, saving state after a
// successful write.
func (s *Sim) dispatch(host string, c call) (reply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hubs[host]
	if !ok {
		return reply{}, errorf(http.StatusNotFound, codeIotHubNotFound, "IoT hub %s not found", host)
	}
	fn := s.handlerFor(c)
	if fn == nil {
		return reply{}, errorf(http.StatusMethodNotAllowed, codeMethodNotAllowed, "%s is not allowed on %s", c.method, c.kind)
	}
	rep, err := fn(h, c)
	if err == nil && c.method != http.MethodGet {
		if rec := h.devices[c.id]; rec != nil && c.id != "" {
			rec.raw = nil // re-encoded by the next save
		}
		s.markDirtyLocked()
	}
	return rep, err
}

type handlerFunc func(h *hubState, c call) (reply, error)

func (s *Sim) handlerFor(c call) handlerFunc {
	type key struct{ kind, method string }
	routes := map[key]handlerFunc{
		{"devices", http.MethodGet}:    s.getDevice,
		{"devices", http.MethodPut}:    s.putDevice,
		{"devices", http.MethodDelete}: s.deleteDevice,
		{"twins", http.MethodGet}:      s.getTwin,
		{"twins", http.MethodPatch}:    s.patchTwin,
		{"twins", http.MethodPut}:      s.replaceTwin,
	}
	if c.id == "" {
		if c.kind == "devices" && c.method == http.MethodGet {
			return s.listDevices
		}
		return nil
	}
	return routes[key{c.kind, c.method}]
}

// Device returns a copy of a device identity of hub host.
func (s *Sim) Device(host, id string) (hub.Device, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recordLocked(host, id)
	if rec == nil {
		return hub.Device{}, false
	}
	return cloneDevice(rec.Device), true
}

// Twin returns a copy of a device twin of hub host.
func (s *Sim) Twin(host, id string) (hub.Twin, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recordLocked(host, id)
	if rec == nil {
		return hub.Twin{}, false
	}
	return rec.twin(), true
}

// Devices returns copies of the identities of hub host, sorted by ID (nil
// for an unknown hub).
func (s *Sim) Devices(host string) []hub.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hubs[normHost(host)]
	if !ok {
		return nil
	}
	return h.list(0)
}

func (s *Sim) recordLocked(host, id string) *record {
	h, ok := s.hubs[normHost(host)]
	if !ok {
		return nil
	}
	return h.devices[id]
}
