package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReuse(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "x_total", Help: "x"}
	a := MustReuse(reg, prometheus.NewCounterVec(opts, []string{"l"}))
	b := MustReuse(reg, prometheus.NewCounterVec(opts, []string{"l"}))
	if a != b {
		t.Fatal("the second registration did not get the first collector")
	}
	b.WithLabelValues("v").Inc()
	if got := testCount(t, reg); got != 1 {
		t.Errorf("series count = %v, want 1 (both callers count into one series)", got)
	}
	// Same name, other labels: an error, and MustReuse panics.
	if _, err := Reuse(reg, prometheus.NewCounterVec(opts, []string{"other"})); err == nil {
		t.Error("a conflicting collector was accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustReuse of a conflicting collector did not panic")
		}
	}()
	MustReuse(reg, prometheus.NewCounterVec(opts, []string{"other"}))
}

func testCount(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "x_total" && len(mf.Metric) == 1 {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	return -1
}
