package httpfront_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/deviceapi/httpfront"
	"github.com/prometheus/client_golang/prometheus"
)

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  httpfront.Config
	}{
		{"no engine", httpfront.Config{Registerer: prometheus.NewRegistry()}},
		{"negative MaxBody", httpfront.Config{Engine: &fakeEngine{}, MaxBody: -1, Registerer: prometheus.NewRegistry()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := httpfront.New(tc.cfg); !errors.Is(err, httpfront.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig", err)
			}
		})
	}
}

func TestDefaultMaxBody(t *testing.T) {
	fe := &fakeEngine{result: assigning(1)}
	h := newHandler(t, fe, 0)
	pad := strings.Repeat(" ", httpfront.DefaultMaxBody-2)
	if rec := serve(h, put(regPath+apiQuery, str("{"+pad+"}"))); rec.Code != http.StatusAccepted {
		t.Errorf("body of exactly DefaultMaxBody: status %d, want 202", rec.Code)
	}
	if rec := serve(h, put(regPath+apiQuery, str("{"+pad+" }"))); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body of DefaultMaxBody+1: status %d, want 413", rec.Code)
	}
}

// counter returns the request counter for route and code in reg.
func counter(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "opendps_deviceapi_https_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["route"] == route && l["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestMetricsSharedRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	fe := &fakeEngine{result: assigning(1)}
	var hs []http.Handler
	for range 2 {
		h, err := httpfront.New(httpfront.Config{Engine: fe, Registerer: reg})
		if err != nil {
			t.Fatalf("New with a shared registry: %v", err)
		}
		hs = append(hs, h)
	}
	serve(hs[0], put(regPath+apiQuery, nil))
	serve(hs[1], put(regPath+apiQuery, nil))
	serve(hs[1], get("/nowhere", nil))
	serve(hs[0], get(regPath+apiQuery, nil))
	for _, w := range []struct {
		route, code string
		n           float64
	}{{"register", "202", 2}, {"unknown", "404", 1}, {"register", "405", 1}} {
		if got := counter(t, reg, w.route, w.code); got != w.n {
			t.Errorf("requests{route=%s,code=%s} = %v, want %v", w.route, w.code, got, w.n)
		}
	}
	mfs, _ := reg.Gather()
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "opendps_deviceapi_https_request_duration_seconds" {
			found = true
		}
	}
	if !found {
		t.Error("latency histogram not registered")
	}
}

func TestMetricsDefaultRegisterer(t *testing.T) {
	for i := range 2 {
		if _, err := httpfront.New(httpfront.Config{Engine: &fakeEngine{}}); err != nil {
			t.Fatalf("New #%d on the default registerer: %v", i+1, err)
		}
	}
}
