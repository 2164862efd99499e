package bench

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run. Its JSON form is stable: fields are
// only ever added.
type Report struct {
	RunID          string   `json:"runId"`
	Protocol       string   `json:"protocol"`
	ConnectionMode string   `json:"connectionMode"`
	Enrollment     string   `json:"enrollment"`
	Devices        int      `json:"devices"`
	Concurrency    int      `json:"concurrency"`
	Rounds         int      `json:"rounds"`     // 0: bounded by the duration only
	TargetRate     float64  `json:"targetRate"` // registrations started per second; 0: closed loop
	Endpoints      []string `json:"endpoints"`
	// EndpointHits counts registrations per device endpoint.
	EndpointHits map[string]int64 `json:"endpointHits"`

	SetupSeconds   float64 `json:"setupSeconds"`
	ElapsedSeconds float64 `json:"elapsedSeconds"` // load phase, tail included

	Attempts int64 `json:"attempts"`
	Assigned int64 `json:"assigned"`
	// First counts first successful registrations of a device, Repeat
	// the later ones (idempotent re-registrations).
	First        int64 `json:"firstRegistrations"`
	Repeat       int64 `json:"repeatRegistrations"`
	Failed       int64 `json:"failed"`
	MissedStarts int64 `json:"missedStarts"` // --rate only: tickets dropped, all workers busy

	RegistrationsPerSecond float64 `json:"registrationsPerSecond"` // assigned / elapsed
	FirstPerSecond         float64 `json:"firstPerSecond"`         // first / time to the last first
	RepeatPerSecond        float64 `json:"repeatPerSecond"`        // repeat / time from the first repeat

	Latency       Latency `json:"latencyMs"`
	LatencyFirst  Latency `json:"latencyFirstMs"`
	LatencyRepeat Latency `json:"latencyRepeatMs"`

	RoundTripsPerRegistration float64 `json:"roundTripsPerRegistration"` // 1.0 on the fast path
	PollsPerRegistration      float64 `json:"pollsPerRegistration"`
	ThrottleRetries           int64   `json:"throttleRetries"`
	// NodeRetries counts registrations tried again on the next node, by
	// what the node they left answered (a transport error kind, or
	// http_503_...); NodeRetrySamples has one message per kind.
	NodeRetries      map[string]int64  `json:"nodeRetries"`
	NodeRetrySamples map[string]string `json:"nodeRetrySamples,omitempty"`

	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"errorSamples,omitempty"`

	Raw        *RawReport `json:"raw,omitempty"`
	RawSkipped string     `json:"rawSkipped,omitempty"` // why there is no raw measurement
	// Ratio is RegistrationsPerSecond / Raw.WritesPerSecond, RatioFirst
	// the same for first registrations.
	Ratio      float64 `json:"ratio,omitempty"`
	RatioFirst float64 `json:"ratioFirst,omitempty"`

	// Replication is the replication lag of the instance's stream during
	// the load (multi-region deployments); ReplicationSkipped says why it
	// is missing.
	Replication        *ReplicationReport `json:"replication,omitempty"`
	ReplicationSkipped string             `json:"replicationSkipped,omitempty"`

	CleanupError string `json:"cleanupError,omitempty"`
}

func newReport(cfg *Config) *Report {
	mode := ModeNewConnection
	if cfg.ReuseConnections {
		mode = ModeReuse
	}
	return &Report{RunID: cfg.RunID, Protocol: cfg.Protocol, ConnectionMode: mode, Enrollment: cfg.Enrollment,
		Devices: cfg.Devices, Concurrency: min(cfg.Concurrency, cfg.Devices), Rounds: cfg.Rounds,
		TargetRate: cfg.Rate, Endpoints: cfg.endpoints(), Errors: map[string]int64{}, NodeRetries: map[string]int64{}}
}

// fill copies the load phase's counters into r.
func (l *load) fill(r *Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	elapsed := l.end.Sub(l.start)
	r.ElapsedSeconds = round3(elapsed.Seconds())
	r.EndpointHits = l.epHits
	r.Attempts, r.First, r.Repeat = l.attempts, l.firsts, l.repeats
	r.Assigned = l.firsts + l.repeats
	r.Failed = l.errs.Total()
	r.MissedStarts = l.missed.Load()
	r.RegistrationsPerSecond = perSecond(r.Assigned, elapsed)
	if l.firsts > 0 {
		r.FirstPerSecond = perSecond(l.firsts, l.lastFirst.Sub(l.start))
	}
	if l.repeats > 0 {
		r.RepeatPerSecond = perSecond(l.repeats, l.end.Sub(l.firstRepeat))
	}
	r.Latency, r.LatencyFirst, r.LatencyRepeat = l.all.Summary(), l.first.Summary(), l.repeat.Summary()
	if r.Assigned > 0 {
		r.RoundTripsPerRegistration = round3(float64(l.roundTrips) / float64(r.Assigned))
		r.PollsPerRegistration = round3(float64(l.polls) / float64(r.Assigned))
	}
	r.ThrottleRetries = l.retries
	if l.nodeRetries.Counts != nil {
		r.NodeRetries, r.NodeRetrySamples = l.nodeRetries.Counts, l.nodeRetries.Samples
	}
	if l.errs.Counts != nil {
		r.Errors, r.ErrorSamples = l.errs.Counts, l.errs.Samples
	}
}

// setRaw records the raw measurement and the ratios.
func (r *Report) setRaw(raw *RawReport) {
	r.Raw = raw
	if raw != nil && raw.WritesPerSecond > 0 {
		r.Ratio = round3(r.RegistrationsPerSecond / raw.WritesPerSecond)
		r.RatioFirst = round3(r.FirstPerSecond / raw.WritesPerSecond)
	}
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round1(float64(n) / d.Seconds())
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// WriteText prints r for people: plain ASCII, one fact per line.
func (r *Report) WriteText(w io.Writer) {
	p := func(k, format string, a ...any) { fmt.Fprintf(w, "%-28s "+format+"\n", append([]any{k}, a...)...) }
	p("run", "%s (%s, %s enrollment, %s)", r.RunID, r.Protocol, r.Enrollment, r.ConnectionMode)
	load := fmt.Sprintf("%d devices, %d workers", r.Devices, r.Concurrency)
	if r.TargetRate > 0 {
		load += fmt.Sprintf(", target %.1f/s", r.TargetRate)
	}
	p("load", "%s", load)
	for _, ep := range r.Endpoints {
		p("endpoint", "%s (%d registrations)", ep, r.EndpointHits[ep])
	}
	p("setup", "%.1fs", r.SetupSeconds)
	p("load phase", "%.2fs", r.ElapsedSeconds)
	p("registrations", "%d assigned of %d (%d first, %d repeat), %d failed", r.Assigned, r.Attempts, r.First, r.Repeat, r.Failed)
	if r.MissedStarts > 0 {
		p("missed starts", "%d (generator saturated: raise --concurrency)", r.MissedStarts)
	}
	p("registrations/s", "%.1f (first %.1f, repeat %.1f)", r.RegistrationsPerSecond, r.FirstPerSecond, r.RepeatPerSecond)
	p("latency all (ms)", "%s", r.Latency)
	p("latency first (ms)", "%s", r.LatencyFirst)
	p("latency repeat (ms)", "%s", r.LatencyRepeat)
	p("round trips/registration", "%.3f (polls %.3f, throttle retries %d)", r.RoundTripsPerRegistration, r.PollsPerRegistration, r.ThrottleRetries)
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		p("error "+k, "%d (e.g. %s)", r.Errors[k], r.ErrorSamples[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.NodeRetries)) {
		p("next node after "+k, "%d (e.g. %s)", r.NodeRetries[k], r.NodeRetrySamples[k])
	}
	switch {
	case r.Raw != nil:
		p("raw etcd writes/s", "%.1f (%d writers, %d-byte values, %.1fs, %d errors)", r.Raw.WritesPerSecond, r.Raw.Writers, r.Raw.ValueBytes, r.Raw.ElapsedSeconds, r.Raw.Errors)
		p("raw latency (ms)", "%s", r.Raw.Latency)
		p("ratio opendps/raw", "%.3f (first registrations %.3f)", r.Ratio, r.RatioFirst)
	case r.RawSkipped != "":
		p("raw etcd writes/s", "skipped: %s", r.RawSkipped)
	}
	switch rr := r.Replication; {
	case rr != nil:
		p("replication lag (ms)", "%s", rr)
		p("replication lag gauge", "max %.2f ms (%d samples, every %.0f ms; settled %.1fs after the load)", rr.GaugeMaxMs, rr.GaugeSamples, rr.SampleIntervalMs, rr.SettleSeconds)
		p("replication lag method", "histogram bucket deltas, linear interpolation within a bucket; scraped %s", strings.Join(rr.Scraped, ", "))
		for _, e := range rr.Errors {
			p("replication lag error", "%s", e)
		}
	case r.ReplicationSkipped != "":
		p("replication lag", "skipped: %s", r.ReplicationSkipped)
	}
	if r.CleanupError != "" {
		p("cleanup", "incomplete: %s", r.CleanupError)
	}
}

func (l Latency) String() string {
	return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (n=%d)", l.P50, l.P90, l.P99, l.Max, l.Count)
}
