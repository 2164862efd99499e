package dr

import (
	"sync"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// MetricFailovers counts failovers per instance, by kind (planned,
// unplanned) and outcome (promoted, refused, skipped; error when the
// failover failed before deciding, counted once). No instance label: the
// counter is exported by the region that ran the failover, which need not
// own every instance (docs/observability.md).
const MetricFailovers = "opendps_failovers_total"

var (
	failoversOnce sync.Once
	failovers     *prometheus.CounterVec
)

func failoverCounter() *prometheus.CounterVec {
	failoversOnce.Do(func() {
		failovers = promreg.MustReuse(prometheus.DefaultRegisterer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFailovers,
			Help: "Instance failovers run in this region, by kind (planned, unplanned) and outcome (promoted, refused, skipped, error).",
		}, []string{"kind", "outcome"}))
	})
	return failovers
}

func failoverKind(planned bool) string {
	if planned {
		return "planned"
	}
	return "unplanned"
}

// countFailover records the outcome of each instance of a failover.
func countFailover(planned bool, items []model.FailoverItem) {
	c := failoverCounter()
	for _, it := range items {
		c.WithLabelValues(failoverKind(planned), it.Status).Inc()
	}
}

// countFailoverError records a failover that failed before deciding.
func countFailoverError(planned bool) {
	failoverCounter().WithLabelValues(failoverKind(planned), "error").Inc()
}
