package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestParseMetricsKeepsTheTarget(t *testing.T) {
	const text = `# HELP opendps_replication_batch_lag_seconds x
# TYPE opendps_replication_batch_lag_seconds histogram
opendps_replication_batch_lag_seconds_bucket{destination="northeurope",source="westeurope",le="0.01"} 3
opendps_replication_batch_lag_seconds_bucket{destination="northeurope",source="westeurope",le="0.1"} 7
opendps_replication_batch_lag_seconds_bucket{destination="northeurope",source="westeurope",le="+Inf"} 8
opendps_replication_batch_lag_seconds_sum{destination="northeurope",source="westeurope"} 2.5
opendps_replication_batch_lag_seconds_count{destination="northeurope",source="westeurope"} 8
opendps_replication_batch_lag_seconds_bucket{destination="southcentralus",source="brazilsouth",le="0.01"} 100
# TYPE opendps_replication_lag_seconds gauge
opendps_replication_lag_seconds{destination="northeurope",instance="dps1"} 0.042
opendps_replication_lag_seconds{destination="northeurope",instance="other"} 9
opendps_replication_lag_seconds{destination="north\"europe",instance="dps1"} 7
go_goroutines 12
`
	s, err := parseMetrics(strings.NewReader(text), &lagTarget{instance: "dps1", source: "westeurope", destination: "northeurope"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.found || len(s.hist.les) != 3 || s.hist.total() != 8 || s.hist.sum != 2.5 || !math.IsInf(s.hist.les[2], 1) {
		t.Errorf("histogram = %+v", s.hist)
	}
	if s.gauge != 0.042 {
		t.Errorf("gauge = %v, want 0.042 (other instances and destinations ignored)", s.gauge)
	}
}

func TestHistogramQuantileInterpolates(t *testing.T) {
	inf := math.Inf(1)
	before := histogram{les: []float64{0.01, 0.1, 1, inf}, counts: []float64{10, 10, 10, 10}, sum: 0.05}
	after := histogram{les: []float64{0.01, 0.1, 1, inf}, counts: []float64{60, 110, 110, 110}, sum: 5.05}
	d := after.minus(before)
	if d.total() != 100 || d.sum != 5 {
		t.Fatalf("delta = %+v", d)
	}
	// 50 in (0, 10 ms], 50 in (10, 100 ms].
	for _, c := range []struct{ q, want float64 }{{0.25, 0.005}, {0.5, 0.01}, {0.75, 0.055}, {0.99, 0.0982}} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%.2f = %v, want %v", c.q, got, c.want)
		}
	}
	if got := d.maxBucket(); got != 0.1 {
		t.Errorf("max bucket = %v, want 0.1", got)
	}
	over := histogram{les: []float64{1, inf}, counts: []float64{1, 3}}
	if got := over.quantile(0.99); got != 1 {
		t.Errorf("quantile in +Inf = %v, want the highest finite bound 1", got)
	}
	if !math.IsInf(over.maxBucket(), 1) {
		t.Errorf("max bucket = %v, want +Inf", over.maxBucket())
	}
}

func TestReplicationTargetReadsEachProcessOnce(t *testing.T) {
	conn := &dpsclient.Connection{InstanceName: "dps1", Region: "westeurope",
		Instances: []dpsclient.InstanceInfo{{Name: "dps1", Region: "westeurope"}, {Name: "res", Region: "brazilsouth", DataResidency: true}},
		Regions: []dpsclient.RegionInfo{
			{Name: "westeurope", Pair: "northeurope", ControlURLs: []string{"https://a:1", "https://a:2", "https://a:3"}},
			{Name: "northeurope", Pair: "westeurope", ControlURLs: []string{"https://b:1"}},
		},
		Nodes: []dpsclient.NodeInfo{
			{Region: "westeurope", ControlURL: "https://a:1", PID: 7, DeviceEndpoint: "a:11"},
			{Region: "westeurope", ControlURL: "https://a:2", PID: 7, DeviceEndpoint: "a:12"},
			{Region: "westeurope", ControlURL: "https://a:3", PID: 8, DeviceEndpoint: "a:13"},
			{Region: "northeurope", ControlURL: "https://b:1", PID: 7, DeviceEndpoint: "b:11"},
		}}
	tg, err := replicationTarget(conn)
	if err != nil {
		t.Fatal(err)
	}
	if tg.source != "westeurope" || tg.destination != "northeurope" || strings.Join(tg.urls, " ") != "https://a:1 https://a:3" {
		t.Errorf("target = %+v", tg)
	}
	cfg := Config{Conn: conn}
	if got := strings.Join(cfg.endpoints(), " "); got != "a:11 a:12 a:13" {
		t.Errorf("endpoints = %s, want the primary region's", got)
	}
	cfg.AllRegions = true
	if got := len(cfg.endpoints()); got != 4 {
		t.Errorf("all regions: %d endpoints, want 4", got)
	}
	conn.InstanceName = "res"
	if _, err := replicationTarget(conn); err == nil {
		t.Error("a residency instance has a replication target")
	}
}

// TestLagProbe serves a histogram that grows during the "load" and a
// gauge that is non-zero once, then zero: the report has the delta's
// batches and the gauge's maximum.
func TestLagProbe(t *testing.T) {
	var mu sync.Mutex
	counts := []float64{5, 5, 5} // le 0.01, 0.1, +Inf
	gauge := 0.0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, "# TYPE opendps_replication_batch_lag_seconds histogram")
		for i, le := range []string{"0.01", "0.1", "+Inf"} {
			fmt.Fprintf(w, "opendps_replication_batch_lag_seconds_bucket{destination=\"ne\",source=\"we\",le=%q} %v\n", le, counts[i])
		}
		fmt.Fprintf(w, "opendps_replication_batch_lag_seconds_sum{destination=\"ne\",source=\"we\"} 1\n")
		fmt.Fprintln(w, "# TYPE opendps_replication_lag_seconds gauge")
		fmt.Fprintf(w, "opendps_replication_lag_seconds{destination=\"ne\",instance=\"i\"} %v\n", gauge)
	}))
	defer srv.Close()
	p := newLagProbe(&lagTarget{instance: "i", source: "we", destination: "ne", urls: []string{srv.URL}}, srv.Client(), 10*time.Millisecond)
	ctx := context.Background()
	if err := p.start(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	counts, gauge = []float64{15, 25, 25}, 0.3
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	gauge = 0
	mu.Unlock()
	r := p.finish(ctx)
	if r.Batches != 20 || r.GaugeMaxMs != 300 || r.GaugeSamples == 0 || r.MaxBucketMs != 100 {
		t.Errorf("report = %+v", r)
	}
	// 10 of 20 in (0, 10 ms]: the median is the bucket's upper bound.
	if r.P50Ms != 10 || r.P99Ms <= 10 || r.P99Ms > 100 {
		t.Errorf("p50 %v p99 %v", r.P50Ms, r.P99Ms)
	}
}

// TestLagProbeSourceGone: a source that stops answering after the first
// read leaves a report without figures that says why.
func TestLagProbeSourceGone(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "opendps_replication_batch_lag_seconds_bucket{destination=\"ne\",source=\"we\",le=\"+Inf\"} 5\n")
	}))
	p := newLagProbe(&lagTarget{instance: "i", source: "we", destination: "ne", urls: []string{srv.URL}}, srv.Client(), 10*time.Millisecond)
	if err := p.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r := p.finish(ctx)
	if r.Batches != 0 || len(r.Errors) == 0 {
		t.Errorf("report = %+v, want no batches and the failed reads", r)
	}
}
