package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/allocate"
	"github.com/opendps/opendps/internal/attest"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Config configures an Engine.
type Config struct {
	// Store holds the state. Required.
	Store *store.Store
	// Enrollments writes registration records; nil means enrollment.New(Store).
	Enrollments *enrollment.Service
	// Region is the region of the serving node (geoLatency allocation).
	Region string
	// HubTLS is the client TLS configuration for linked hubs and webhooks.
	HubTLS *tls.Config
	// FastPath is how long a register call waits for the work to finish
	// before answering "assigning" (0: 200 ms; negative: never wait).
	FastPath time.Duration
	// WorkTimeout bounds one registration's work (0: 60 s).
	WorkTimeout time.Duration
	// HubTimeout bounds each call to a linked hub (0: 5 s).
	HubTimeout time.Duration
	// WebhookTimeout bounds each custom allocation call (0: 10 s).
	WebhookTimeout time.Duration
	// StoreTimeout bounds marker writes (0: 5 s).
	StoreTimeout time.Duration
	// RetryAfter is the Retry-After, in seconds, of an "assigning" answer (0: 2).
	RetryAfter int
	// Throttle limits registrations and polls; nil means no limits.
	Throttle Limiter
	// Log receives diagnostics; nil discards.
	Log *slog.Logger
}

func (c *Config) setDefaults() {
	if c.FastPath == 0 {
		c.FastPath = 200 * time.Millisecond
	}
	if c.WorkTimeout == 0 {
		c.WorkTimeout = 60 * time.Second
	}
	if c.HubTimeout == 0 {
		c.HubTimeout = 5 * time.Second
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 10 * time.Second
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 2
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Limiter limits the rate of registrations (per instance) and of polls
// (per device). Implementations must be safe for concurrent use and cheap:
// they are called on every request. A refusal says how long to wait.
type Limiter interface {
	AllowRegister(instance string) (ok bool, retryAfter time.Duration)
	AllowPoll(instance, registrationID string) (ok bool, retryAfter time.Duration)
}

type noLimits struct{}

func (noLimits) AllowRegister(string) (bool, time.Duration)     { return true, 0 }
func (noLimits) AllowPoll(string, string) (bool, time.Duration) { return true, 0 }

// Engine is the provisioning engine. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	store    *store.Store
	enr      *enrollment.Service
	snaps    *snapshots
	hubs     *hubPool
	attestor *attest.Attestor
	alloc    *allocate.Allocator
	leases   *markerLeases
	throttle Limiter
	log      *slog.Logger

	// afterWrite, when set (tests), replaces the outcome of each write of
	// registration record rec: it injects store failures.
	afterWrite func(rec *model.Registration, err error) error

	ctx    context.Context // canceled by Close; parent of background work
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ Device = (*Engine)(nil)

// New returns a running engine; Close stops it.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("engine: config: Store is required")
	}
	cfg.setDefaults()
	e := &Engine{cfg: cfg, store: cfg.Store, enr: cfg.Enrollments, log: cfg.Log, throttle: cfg.Throttle}
	if e.enr == nil {
		e.enr = enrollment.New(cfg.Store)
	}
	if e.throttle == nil {
		e.throttle = noLimits{}
	}
	e.snaps = newSnapshots(cfg.Store, cfg.Log, 30*time.Second)
	e.hubs = newHubPool(cfg.HubTLS, cfg.HubTimeout)
	e.attestor = &attest.Attestor{Cache: attest.NewKeyCache(100000)}
	e.alloc = &allocate.Allocator{Health: e.hubs,
		Webhook: &allocate.Webhook{Timeout: cfg.WebhookTimeout, TLSConfig: cfg.HubTLS}}
	e.leases = &markerLeases{st: cfg.Store, ttl: 10 * time.Minute, rotate: time.Minute}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.snaps.watch(e.ctx)
	}()
	return e, nil
}

// Close stops background work (registrations in flight are abandoned; a
// device retries) and waits for it. It is idempotent.
func (e *Engine) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
