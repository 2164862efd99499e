// Package obs holds the Prometheus metrics and request logging that the
// node puts around its front ends (docs/observability.md): registrations
// by result, protocol and attestation; device request latency for every
// protocol; throttled device requests; service and control request
// latency; per-node store and zone health.
//
// Metrics are registered once per process with the default registry, the
// one GET /metrics serves (as internal/replicate's and etcd's are).
//
// No label ever carries a registration id, an ID scope, a key or an
// instance name: a node may serve requests of a residency instance only
// to forward them to the instance's region (docs/dr.md), and what it
// exports must say nothing about that instance's devices.
package obs

import (
	"sync"

	"github.com/opendps/opendps/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names.
const (
	MetricRegistrations   = "opendps_registrations_total"
	MetricDeviceRequests  = "opendps_device_requests_total"
	MetricDeviceLatency   = "opendps_device_request_duration_seconds"
	MetricThrottled       = "opendps_throttled_requests_total"
	MetricHTTPRequests    = "opendps_http_requests_total"
	MetricHTTPLatency     = "opendps_http_request_duration_seconds"
	MetricStoreReady      = "opendps_store_ready"
	MetricZoneRedundant   = "opendps_region_zone_redundant"
	MetricRegionZones     = "opendps_region_zones"
	MetricRegionLiveNodes = "opendps_region_live_nodes"
)

// latencyBuckets reach from 1 ms (a fast-path register on a warm node) to
// 30 s (a hub that times out).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

type collectors struct {
	registrations  *prometheus.CounterVec   // result, protocol, attestation
	deviceRequests *prometheus.CounterVec   // protocol, operation, code
	deviceLatency  *prometheus.HistogramVec // protocol, operation
	throttled      *prometheus.CounterVec   // api, protocol, operation
	httpRequests   *prometheus.CounterVec   // listener, method, code
	httpLatency    *prometheus.HistogramVec // listener, method
}

var (
	once sync.Once
	all  *collectors
)

func metrics() *collectors {
	once.Do(func() {
		reg := prometheus.DefaultRegisterer
		all = &collectors{
			registrations: promreg.MustReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: MetricRegistrations,
				Help: "Device registrations by the outcome told to the device (assigned, failed, disabled, unauthorized, not_found, throttled, bad_request, error), device protocol (https, mqtt, mqtt-ws) and attestation (symmetricKey, x509, none).",
			}, []string{"result", "protocol", "attestation"})),
			deviceRequests: promreg.MustReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: MetricDeviceRequests,
				Help: "Device API requests by protocol, operation (register, operation_status, registration_status, authenticate) and HTTP status code of the answer.",
			}, []string{"protocol", "operation", "code"})),
			deviceLatency: promreg.MustReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    MetricDeviceLatency,
				Help:    "Time the provisioning engine took to answer a device request, by protocol and operation.",
				Buckets: latencyBuckets,
			}, []string{"protocol", "operation"})),
			throttled: promreg.MustReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: MetricThrottled,
				Help: "Requests answered 429 (throttled), by API (device, service, control), protocol and operation.",
			}, []string{"api", "protocol", "operation"})),
			httpRequests: promreg.MustReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: MetricHTTPRequests,
				Help: "HTTP requests of the service and control listeners, by listener, method and status code.",
			}, []string{"listener", "method", "code"})),
			httpLatency: promreg.MustReuse(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    MetricHTTPLatency,
				Help:    "Latency of HTTP requests of the service and control listeners, by listener and method.",
				Buckets: latencyBuckets,
			}, []string{"listener", "method"})),
		}
	})
	return all
}

// method bounds the method label to the methods the APIs serve.
func method(m string) string {
	switch m {
	case "GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS":
		return m
	}
	return "other"
}
