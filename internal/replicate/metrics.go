package replicate

import (
	"sync"

	"github.com/opendps/opendps/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of replication, registered once per process with the default
// registry (residency instances never appear: they are never streamed).
type metrics struct {
	lag      *prometheus.GaugeVec     // instance, destination
	batchLag *prometheus.HistogramVec // source, destination
	applied  *prometheus.CounterVec   // source
}

var (
	metricsOnce sync.Once
	theMetrics  *metrics
)

// batchLagBuckets reach down to 1 ms: the target is a p99 of 250 ms.
var batchLagBuckets = []float64{.001, .002, .005, .01, .02, .05, .1, .15, .25, .5, 1, 2.5, 5, 10, 30}

func defaultMetrics() *metrics {
	metricsOnce.Do(func() {
		reg := prometheus.DefaultRegisterer
		theMetrics = &metrics{
			lag: promreg.MustReuse(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: "opendps_replication_lag_seconds",
				Help: "Age of the oldest change of the instance not yet acknowledged by the destination region (0 when caught up).",
			}, []string{"instance", "destination"})),
			batchLag: promreg.MustReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "opendps_replication_batch_lag_seconds",
				Help:    "Time from a batch's oldest change at the source to the destination's acknowledgement.",
				Buckets: batchLagBuckets,
			}, []string{"source", "destination"})),
			applied: promreg.MustReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "opendps_replication_applied_total",
				Help: "Replicated changes (key puts and deletions) applied in this region, by source region.",
			}, []string{"source"})),
		}
	})
	return theMetrics
}
