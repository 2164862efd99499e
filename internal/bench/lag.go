package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names of internal/replicate (docs/dr-design.md, "Lag").
const (
	metricBatchLag = "opendps_replication_batch_lag_seconds"
	metricLag      = "opendps_replication_lag_seconds"
)

// LagMethod says how the report's quantiles are computed.
const LagMethod = "delta of the source nodes' opendps_replication_batch_lag_seconds histogram between the start and the end of the load phase; quantiles interpolated linearly within a bucket (as PromQL histogram_quantile)"

// ReplicationReport is the replication lag of the run's instance measured
// in the same run: from the histogram of the source region's nodes (per
// batch: the time from the batch's oldest change at the source to the
// destination's acknowledgement), and the lag gauge (age of the oldest
// unacknowledged change) sampled during the load.
type ReplicationReport struct {
	Instance    string `json:"instance"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// Scraped are the control URLs whose /metrics were read: one per
	// process of the source region (nodes of one process share one
	// registry, so they are read once).
	Scraped []string `json:"scraped"`
	Method  string   `json:"method"`
	// Batches acknowledged during the load phase (and the settle time
	// after it, SettleSeconds).
	Batches int64   `json:"batches"`
	MeanMs  float64 `json:"meanMs"`
	P50Ms   float64 `json:"p50Ms"`
	P90Ms   float64 `json:"p90Ms"`
	P99Ms   float64 `json:"p99Ms"`
	// MaxBucketMs is the upper bound of the highest non-empty bucket (the
	// largest batch lag is at most this); -1 when it is the +Inf bucket.
	MaxBucketMs float64 `json:"maxBucketMs"`
	// GaugeMaxMs is the largest value of the instance's lag gauge seen in
	// GaugeSamples samples, one every SampleIntervalMs during the load.
	GaugeMaxMs       float64 `json:"gaugeMaxMs"`
	GaugeSamples     int     `json:"gaugeSamples"`
	SampleIntervalMs float64 `json:"sampleIntervalMs"`
	SettleSeconds    float64 `json:"settleSeconds"`
	// Errors are failed scrapes (one sample per kind of failure).
	Errors []string `json:"errors,omitempty"`
}

// lagTarget says what to scrape: the instance's primary region and its
// pair, and one control URL per process of the primary region.
type lagTarget struct {
	instance, source, destination string
	urls                          []string
}

// PrimaryRegion returns the region of the connection's default instance
// in a multi-region deployment ("" for one region).
func PrimaryRegion(conn *dpsclient.Connection) string {
	if len(conn.Regions) == 0 {
		return ""
	}
	for _, in := range conn.Instances {
		if in.Name == conn.InstanceName && in.Region != "" {
			return in.Region
		}
	}
	return conn.Region
}

// replicationTarget returns what to scrape for conn, or why the lag
// cannot be measured.
func replicationTarget(conn *dpsclient.Connection) (*lagTarget, error) {
	src := PrimaryRegion(conn)
	if src == "" {
		return nil, errors.New("one region: nothing is replicated")
	}
	for _, in := range conn.Instances {
		if in.Name == conn.InstanceName && in.DataResidency {
			return nil, fmt.Errorf("instance %s has data residency: it is never replicated", in.Name)
		}
	}
	t := &lagTarget{instance: conn.InstanceName, source: src}
	var urls []string
	for _, r := range conn.Regions {
		if r.Name == src {
			t.destination, urls = r.Pair, r.ControlURLs
		}
	}
	if t.destination == "" {
		return nil, fmt.Errorf("region %s has no pair in the connection file", src)
	}
	// Nodes of one process share the default Prometheus registry: read
	// each process once.
	pids := map[string]int{}
	for _, n := range conn.Nodes {
		pids[strings.TrimSuffix(n.ControlURL, "/")] = n.PID
	}
	seen := map[int]bool{}
	for _, u := range urls {
		u = strings.TrimSuffix(u, "/")
		if pid := pids[u]; pid > 0 {
			if seen[pid] {
				continue
			}
			seen[pid] = true
		}
		t.urls = append(t.urls, u)
	}
	if len(t.urls) == 0 {
		return nil, fmt.Errorf("region %s has no control URL in the connection file", src)
	}
	return t, nil
}

// histogram is one cumulative Prometheus histogram: bucket upper bounds
// (ascending, +Inf last) and their cumulative counts.
type histogram struct {
	les    []float64
	counts []float64
	sum    float64
}

func (h *histogram) add(o histogram) {
	for i, le := range o.les {
		j := slices.Index(h.les, le)
		if j < 0 {
			h.les = append(h.les, le)
			h.counts = append(h.counts, 0)
			j = len(h.les) - 1
		}
		h.counts[j] += o.counts[i]
	}
	h.sum += o.sum
	h.sortBuckets()
}

func (h *histogram) sortBuckets() {
	idx := make([]int, len(h.les))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmpFloat(h.les[a], h.les[b]) })
	les, counts := make([]float64, len(idx)), make([]float64, len(idx))
	for k, i := range idx {
		les[k], counts[k] = h.les[i], h.counts[i]
	}
	h.les, h.counts = les, counts
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// minus returns h - before, bucket by bucket (before's buckets are a
// subset of h's: counters only grow).
func (h histogram) minus(before histogram) histogram {
	out := histogram{les: slices.Clone(h.les), counts: slices.Clone(h.counts), sum: h.sum - before.sum}
	for i, le := range before.les {
		if j := slices.Index(out.les, le); j >= 0 {
			out.counts[j] -= before.counts[i]
		}
	}
	return out
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile returns the q-quantile, interpolated linearly within the
// bucket holding it (the lower bound of the first bucket is 0). A
// quantile in the +Inf bucket answers the highest finite bound.
func (h histogram) quantile(q float64) float64 {
	n := h.total()
	if n <= 0 {
		return math.NaN()
	}
	rank := q * n
	lower, below := 0.0, 0.0
	for i, le := range h.les {
		c := h.counts[i]
		if c >= rank && c > below {
			if math.IsInf(le, 1) {
				return lower
			}
			return lower + (le-lower)*(rank-below)/(c-below)
		}
		lower, below = le, c
	}
	return lower
}

// maxBucket returns the upper bound of the highest non-empty bucket, +Inf
// included.
func (h histogram) maxBucket() float64 {
	below := 0.0
	top := 0.0
	for i, le := range h.les {
		if h.counts[i] > below {
			top = le
		}
		below = h.counts[i]
	}
	return top
}

// scrape is what one /metrics read found for the target.
type scrape struct {
	hist  histogram
	gauge float64 // the instance's lag gauge, seconds (0 when absent)
	found bool    // the histogram series exists
}

// parseMetrics reads the Prometheus text exposition of r and keeps the
// target's batch-lag histogram and lag gauge.
func parseMetrics(r io.Reader, t *lagTarget) (scrape, error) {
	var s scrape
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	if mf := mfs[metricBatchLag]; mf != nil {
		for _, m := range mf.Metric {
			h := m.GetHistogram()
			if h == nil || labelOf(m, "source") != t.source || labelOf(m, "destination") != t.destination {
				continue
			}
			s.found = true
			for _, b := range h.Bucket {
				s.hist.les = append(s.hist.les, b.GetUpperBound())
				s.hist.counts = append(s.hist.counts, float64(b.GetCumulativeCount()))
			}
			s.hist.sum = h.GetSampleSum()
		}
	}
	if mf := mfs[metricLag]; mf != nil {
		for _, m := range mf.Metric {
			if labelOf(m, "instance") == t.instance && labelOf(m, "destination") == t.destination {
				s.gauge = max(s.gauge, m.GetGauge().GetValue())
			}
		}
	}
	s.hist.sortBuckets()
	return s, nil
}

// labelOf returns the value of label name of m, "" when absent.
func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// lagProbe measures the replication lag of one run.
type lagProbe struct {
	t        *lagTarget
	hc       *http.Client
	interval time.Duration
	settle   time.Duration

	before  histogram
	mu      sync.Mutex
	gmax    float64
	samples int
	errs    map[string]bool
	stop    context.CancelFunc
	done    chan struct{}
}

// Defaults of the lag measurement.
const (
	DefaultLagSampleInterval = 250 * time.Millisecond
	// lagSettleTimeout bounds the wait, after the load, for the stream to
	// acknowledge the last changes (the gauge at 0) before the final read.
	lagSettleTimeout = 10 * time.Second
)

func newLagProbe(t *lagTarget, hc *http.Client, interval time.Duration) *lagProbe {
	if interval <= 0 {
		interval = DefaultLagSampleInterval
	}
	c := *hc
	c.Timeout = 5 * time.Second
	return &lagProbe{t: t, hc: &c, interval: interval, errs: map[string]bool{}}
}

// scrapeAll reads every target URL and sums the histograms; the gauge is
// the largest value seen (only the elected replicator's process has one).
func (p *lagProbe) scrapeAll(ctx context.Context) (scrape, error) {
	var out scrape
	var errs []error
	for _, u := range p.t.urls {
		s, err := p.scrapeOne(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out.hist.add(s.hist)
		out.gauge = max(out.gauge, s.gauge)
		out.found = out.found || s.found
	}
	if len(errs) == len(p.t.urls) {
		return out, errors.Join(errs...)
	}
	for _, err := range errs {
		p.noteErr(err)
	}
	return out, nil
}

func (p *lagProbe) scrapeOne(ctx context.Context, base string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return scrape{}, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return scrape{}, fmt.Errorf("%s/metrics: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return scrape{}, fmt.Errorf("%s/metrics: %s", base, resp.Status)
	}
	return parseMetrics(resp.Body, p.t)
}

func (p *lagProbe) noteErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) < 5 {
		p.errs[err.Error()] = true
	}
}

// start reads the histogram before the load and samples the gauge until
// finish.
func (p *lagProbe) start(ctx context.Context) error {
	s, err := p.scrapeAll(ctx)
	if err != nil {
		return err
	}
	p.before = s.hist
	sctx, cancel := context.WithCancel(ctx)
	p.stop, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		tick := time.NewTicker(p.interval)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			s, err := p.scrapeAll(sctx)
			if err != nil {
				if sctx.Err() == nil {
					p.noteErr(err)
				}
				continue
			}
			p.mu.Lock()
			p.gmax = max(p.gmax, s.gauge)
			p.samples++
			p.mu.Unlock()
		}
	}()
	return nil
}

// finish stops the sampling, waits (lagSettleTimeout at most) until the
// stream acknowledged what the load wrote (gauge 0), reads the histogram
// again and reports the difference.
func (p *lagProbe) finish(ctx context.Context) *ReplicationReport {
	p.stop()
	<-p.done
	r := &ReplicationReport{Instance: p.t.instance, Source: p.t.source, Destination: p.t.destination,
		Scraped: p.t.urls, Method: LagMethod, SampleIntervalMs: float64(p.interval.Milliseconds())}
	settled := time.Now()
	var last scrape
	read := false
	for {
		s, err := p.scrapeAll(ctx)
		if err == nil {
			last, read = s, true
			p.mu.Lock()
			p.gmax = max(p.gmax, s.gauge)
			p.mu.Unlock()
			if s.gauge == 0 {
				break
			}
		} else {
			p.noteErr(err)
		}
		if time.Since(settled) > lagSettleTimeout || ctx.Err() != nil {
			p.noteErr(fmt.Errorf("the stream had not caught up %v after the load", lagSettleTimeout))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.SettleSeconds = round3(time.Since(settled).Seconds())
	if !read {
		p.noteErr(errors.New("no /metrics could be read after the load: no histogram figures"))
		last.hist = p.before
	}
	d := last.hist.minus(p.before)
	r.Batches = int64(d.total())
	if r.Batches > 0 {
		r.MeanMs = round3(d.sum / float64(r.Batches) * 1000)
		r.P50Ms = round3(d.quantile(0.50) * 1000)
		r.P90Ms = round3(d.quantile(0.90) * 1000)
		r.P99Ms = round3(d.quantile(0.99) * 1000)
		if mb := d.maxBucket(); math.IsInf(mb, 1) {
			r.MaxBucketMs = -1
		} else {
			r.MaxBucketMs = round3(mb * 1000)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.GaugeMaxMs, r.GaugeSamples = round3(p.gmax*1000), p.samples
	for e := range p.errs {
		r.Errors = append(r.Errors, e)
	}
	slices.Sort(r.Errors)
	return r
}

// String prints the report on one line.
func (r *ReplicationReport) String() string {
	top := fmt.Sprintf("<= %.0f", r.MaxBucketMs)
	if r.MaxBucketMs < 0 {
		top = "above the highest bound"
	}
	return fmt.Sprintf("%s -> %s: %d batches, p50 %.2f  p90 %.2f  p99 %.2f  mean %.2f  max bucket %s ms",
		r.Source, r.Destination, r.Batches, r.P50Ms, r.P90Ms, r.P99Ms, r.MeanMs, top)
}
