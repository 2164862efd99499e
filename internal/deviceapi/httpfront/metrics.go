package httpfront

import (
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Labels: route (register, operation_status,
// registration_status, unknown) and code (the HTTP status).
const (
	metricRequests = "opendps_deviceapi_https_requests_total"
	metricLatency  = "opendps_deviceapi_https_request_duration_seconds"
)

// metrics are the handler's Prometheus collectors; safe for concurrent use.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// newMetrics registers the collectors on reg, reusing ones another
// handler already registered there.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests, err := promreg.Reuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRequests,
		Help: "Device API requests over HTTPS, by route and HTTP status code.",
	}, []string{"route", "code"}))
	if err != nil {
		return nil, err
	}
	latency, err := promreg.Reuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricLatency,
		Help:    "Latency of device API requests over HTTPS, by route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"}))
	if err != nil {
		return nil, err
	}
	return &metrics{requests: requests, latency: latency}, nil
}

func (m *metrics) observe(k routeKind, code int, d time.Duration) {
	m.requests.WithLabelValues(k.String(), strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(k.String()).Observe(d.Seconds())
}
