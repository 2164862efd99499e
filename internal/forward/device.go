package forward

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/store"
)

// Defaults of Config.
const (
	DefaultLocateTTL   = 5 * time.Second
	DefaultNegativeTTL = time.Second
	DefaultLocalTTL    = time.Second
)

// Config configures a Device or a Service.
type Config struct {
	// Store is this region's store. Required.
	Store *store.Store
	// Peer calls the other regions. Required.
	Peer *peer.Client
	// Log receives region names and status codes only; nil discards.
	Log *slog.Logger
	// LocateTTL is how long a peer's answer that it holds a scope or an
	// instance is reused; 0 means DefaultLocateTTL.
	LocateTTL time.Duration
	// NegativeTTL is how long "no peer holds it" (or "a peer could not be
	// asked") is reused; 0 means DefaultNegativeTTL.
	NegativeTTL time.Duration
	// LocalTTL is how long this region's directory entries are reused;
	// 0 means DefaultLocalTTL, negative reads them on every request.
	LocalTTL time.Duration
}

func (c *Config) defaults() error {
	if c.Store == nil {
		return errors.New("forward: Config.Store is required")
	}
	if c.Peer == nil {
		return errors.New("forward: Config.Peer is required")
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.LocateTTL <= 0 {
		c.LocateTTL = DefaultLocateTTL
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.LocalTTL == 0 {
		c.LocalTTL = DefaultLocalTTL
	}
	return nil
}

// Device is the local engine wrapped so that every ID scope is accepted:
// it implements engine.Device, and front ends call it instead of the
// engine. It is safe for concurrent use.
type Device struct {
	local engine.Device
	peer  *peer.Client
	log   *slog.Logger
	dirs  *localDirs
	loc   *locator
}

var _ engine.Device = (*Device)(nil)

// New wraps local, the engine of this region.
func New(local engine.Device, cfg Config) (*Device, error) {
	if local == nil {
		return nil, errors.New("forward: the local engine is required")
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Device{local: local, peer: cfg.Peer, log: cfg.Log,
		dirs: newLocalDirs(cfg.Store, cfg.LocalTTL),
		loc:  newLocator(cfg.Peer, cfg.Log, cfg.LocateTTL, cfg.NegativeTTL)}, nil
}

// target is where a request goes: here (region ""), or a peer region.
type target struct {
	region string
	path   string // the locate path when the region was located, for forget
}

// route decides where the request for idScope is answered.
func (d *Device) route(ctx context.Context, idScope string) (target, error) {
	dir, err := d.dirs.byScope(ctx, idScope)
	if err != nil {
		return target{}, unavailable("The service is temporarily unavailable; retry.", err)
	}
	if dir != nil {
		switch {
		case servesHere(dir):
			return target{}, nil
		case dir.Role == model.RoleFenced:
			return target{}, fencedErr()
		case dir.Primary == "" || dir.Primary == d.peer.Region() || !d.peer.Knows(dir.Primary):
			return target{}, unavailable("The region serving this ID scope cannot be reached; retry.", nil)
		}
		return target{region: dir.Primary}, nil
	}
	loc, err := d.loc.scope(ctx, idScope)
	switch {
	case err != nil:
		return target{}, unavailable("The region serving this ID scope cannot be reached; retry.", err)
	case loc == nil:
		return target{}, nil // nobody has it: the engine answers its 404
	case loc.Role == model.RoleFenced:
		return target{}, fencedErr()
	}
	return target{region: loc.Region, path: scopePath(idScope)}, nil
}

// Authenticate implements engine.Device.
func (d *Device) Authenticate(ctx context.Context, req *engine.Request) error {
	t, err := d.route(ctx, req.IDScope)
	if err != nil {
		return err
	}
	if t.region == "" {
		return d.local.Authenticate(ctx, req)
	}
	return d.forward(ctx, t, opAuth, req, "", nil)
}

// Register implements engine.Device.
func (d *Device) Register(ctx context.Context, req *engine.Request) (*engine.Result, error) {
	t, err := d.route(ctx, req.IDScope)
	if err != nil {
		return nil, err
	}
	if t.region == "" {
		return d.local.Register(ctx, req)
	}
	var res wireResult
	if err := d.forward(ctx, t, opRegister, req, "", &res); err != nil {
		return nil, err
	}
	return &engine.Result{Status: res.Status, RetryAfter: res.RetryAfter}, nil
}

// OperationStatus implements engine.Device.
func (d *Device) OperationStatus(ctx context.Context, req *engine.Request, operationID string) (*engine.Result, error) {
	t, err := d.route(ctx, req.IDScope)
	if err != nil {
		return nil, err
	}
	if t.region == "" {
		return d.local.OperationStatus(ctx, req, operationID)
	}
	var res wireResult
	if err := d.forward(ctx, t, opOperation, req, operationID, &res); err != nil {
		return nil, err
	}
	return &engine.Result{Status: res.Status, RetryAfter: res.RetryAfter}, nil
}

// RegistrationStatus implements engine.Device.
func (d *Device) RegistrationStatus(ctx context.Context, req *engine.Request) (*model.DeviceRegistrationResult, error) {
	t, err := d.route(ctx, req.IDScope)
	if err != nil {
		return nil, err
	}
	if t.region == "" {
		return d.local.RegistrationStatus(ctx, req)
	}
	var res wireResult
	if err := d.forward(ctx, t, opStatus, req, "", &res); err != nil {
		return nil, err
	}
	return res.Registration, nil
}

// unavailable is 503 with Retry-After: 1; cause stays internal.
func unavailable(msg string, cause error) *apierr.Error {
	e := apierr.Wrap(cause, apierr.CodeUnavailable, "%s", msg)
	e.Header = http.Header{"Retry-After": []string{"1"}}
	return e
}

func fencedErr() *apierr.Error {
	return unavailable("This provisioning service is failing over between regions; retry.", nil)
}
