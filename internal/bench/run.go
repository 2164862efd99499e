package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// Run sets up the run's enrollments, drives registrations for
// cfg.Duration (or cfg.Rounds), measures raw etcd writes on the same
// store, cleans up, and reports. It stops by itself: setup and cleanup
// are bounded by cfg.SetupTimeout, the load by cfg.Duration plus one
// cfg.RegistrationTimeout, the raw check by cfg.RawDuration. Traffic goes
// only to the endpoints of cfg.Conn. A raw check that fails does not fail
// the run: the report says why it is missing.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	svc, tc, err := clients(cfg.Conn)
	if err != nil {
		return nil, err
	}
	rep := newReport(&cfg)
	log := cfg.Logger.With("run", cfg.RunID)

	log.Info("setup", "enrollment", cfg.Enrollment, "devices", cfg.Devices)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	f, err := setup(sctx, &cfg, svc)
	cancel()
	rep.SetupSeconds = round3(time.Since(start).Seconds())
	if err != nil {
		if cfg.Cleanup {
			cleanup(&cfg, svc, f, func(int) bool { return false })
		}
		return nil, err
	}

	probe := startLagProbe(ctx, &cfg, rep, log.Info)
	log.Info("load", "duration", cfg.Duration, "concurrency", rep.Concurrency, "mode", rep.ConnectionMode, "endpoints", rep.Endpoints)
	l := newLoad(&cfg, f, tc)
	l.run(ctx)
	l.fill(rep)
	log.Info("load done", "assigned", rep.Assigned, "failed", rep.Failed, "per_second", rep.RegistrationsPerSecond)
	if probe != nil {
		rep.Replication = probe.finish(ctx)
		log.Info("replication lag", "lag", rep.Replication.String(), "gauge_max_ms", rep.Replication.GaugeMaxMs)
	}

	if ctx.Err() == nil {
		rawCheck(ctx, &cfg, rep, log.Info)
	}
	if cfg.Cleanup {
		if err := cleanup(&cfg, svc, f, l.isRegistered); err != nil {
			rep.CleanupError = err.Error()
		}
	}
	return rep, ctx.Err()
}

// clients returns the service API client and the device TLS settings of
// conn.
func clients(conn *dpsclient.Connection) (*dpsclient.Service, *tls.Config, error) {
	hc, err := dpsclient.HTTPClient(conn.CACertificate)
	if err != nil {
		return nil, nil, err
	}
	svc, err := dpsclient.NewService(conn.ServiceConnectionString, hc)
	if err != nil {
		return nil, nil, err
	}
	tc, err := dpsclient.DeviceTLSConfig(conn.CACertificate, nil)
	return svc, tc, err
}

// startLagProbe starts the replication lag measurement of a multi-region
// run (nil when there is none; the report says why when it was expected).
func startLagProbe(ctx context.Context, cfg *Config, rep *Report, info func(string, ...any)) *lagProbe {
	if !cfg.ReplicationLag || len(cfg.Conn.Regions) == 0 {
		return nil
	}
	t, err := replicationTarget(cfg.Conn)
	if err != nil {
		rep.ReplicationSkipped = err.Error()
		return nil
	}
	hc, err := dpsclient.HTTPClient(cfg.Conn.CACertificate)
	if err != nil {
		rep.ReplicationSkipped = err.Error()
		return nil
	}
	p := newLagProbe(t, hc, cfg.LagSampleInterval)
	info("replication lag", "source", t.source, "destination", t.destination, "scrape", t.urls)
	if err := p.start(ctx); err != nil {
		rep.ReplicationSkipped = err.Error()
		return nil
	}
	return p
}

func rawCheck(ctx context.Context, cfg *Config, rep *Report, info func(string, ...any)) {
	if !cfg.RawStoreCheck {
		return
	}
	eps := EtcdEndpoints(cfg.Conn)
	if len(eps) == 0 {
		rep.RawSkipped = "no etcdClientURL in the connection file"
		return
	}
	info("raw etcd writes", "endpoints", eps, "duration", cfg.RawDuration)
	raw, err := RawWrites(ctx, RawConfig{Endpoints: eps, Writers: cfg.Concurrency, Duration: cfg.RawDuration,
		ValueBytes: cfg.RawValueBytes, RunID: cfg.RunID})
	if err != nil && raw == nil {
		rep.RawSkipped = err.Error()
		return
	}
	rep.setRaw(raw)
	if err != nil {
		rep.CleanupError = err.Error()
	}
}

// cleanup deletes what setup created, bounded by SetupTimeout and
// independent of the run's context (an interrupted run still cleans up).
func cleanup(cfg *Config, svc *dpsclient.Service, f *fleet, registered func(int) bool) error {
	if f == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.SetupTimeout)
	defer cancel()
	cfg.Logger.Info("cleanup", "run", cfg.RunID)
	err := f.cleanup(ctx, svc, registered)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("bench: cleanup timed out after %v: %w", cfg.SetupTimeout, err)
	}
	return err
}
