package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/bench"
)

// TestBenchSmoke runs the load generator briefly against a whole
// deployment, over HTTPS and over MQTT (correctness only: no assertion on
// speed): every device gets assigned, nothing fails, the fast path
// answers in one round trip, and the raw store check runs on the same
// etcd.
func TestBenchSmoke(t *testing.T) {
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()
	for _, protocol := range []string{bench.ProtocolHTTPS, bench.ProtocolMQTT} {
		t.Run(protocol, func(t *testing.T) { benchSmoke(t, e, protocol) })
	}
}

func benchSmoke(t *testing.T, e *deployment, protocol string) {
	cfg := bench.DefaultConfig()
	cfg.Conn = e.conn
	cfg.Protocol = protocol
	cfg.Devices, cfg.Concurrency, cfg.Rounds = 40, 8, 2
	cfg.Duration, cfg.RawDuration = 20*time.Second, time.Second
	r, err := bench.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != protocol {
		t.Errorf("report protocol = %q, want %q", r.Protocol, protocol)
	}
	if r.First != 40 || r.Failed != 0 || r.Assigned != r.Attempts {
		t.Errorf("first %d (want 40), failed %d, assigned %d of %d", r.First, r.Failed, r.Assigned, r.Attempts)
	}
	if r.Repeat != 40 {
		t.Errorf("repeat registrations = %d, want 40 (2 rounds)", r.Repeat)
	}
	if r.RoundTripsPerRegistration < 1 || r.RoundTripsPerRegistration > 1.2 {
		t.Errorf("round trips per registration = %.2f, want about 1 (fast path)", r.RoundTripsPerRegistration)
	}
	if r.Raw == nil || r.Raw.WritesPerSecond <= 0 {
		t.Errorf("raw store check = %+v, want a rate", r.Raw)
	}
}
