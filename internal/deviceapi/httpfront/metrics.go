package httpfront

import (
	"errors"
	"strconv"
	"time"

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
	requests, err := registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRequests,
		Help: "Device API requests over HTTPS, by route and HTTP status code.",
	}, []string{"route", "code"}))
	if err != nil {
		return nil, err
	}
	latency, err := registerOrReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricLatency,
		Help:    "Latency of device API requests over HTTPS, by route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"}))
	if err != nil {
		return nil, err
	}
	return &metrics{requests: requests, latency: latency}, nil
}

// registerOrReuse registers c, or returns the identical collector already
// registered (two handlers in one process).
func registerOrReuse[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) observe(k routeKind, code int, d time.Duration) {
	m.requests.WithLabelValues(k.String(), strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(k.String()).Observe(d.Seconds())
}
