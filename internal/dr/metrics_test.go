package dr

import (
	"testing"

	"github.com/opendps/opendps/internal/model"
	dto "github.com/prometheus/client_model/go"
)

// TestFailoverMetrics: opendps_failovers_total counts each instance of a
// failover by kind and outcome: an unplanned failover that promotes one
// instance, then a planned one of the same instance that skips it.
func TestFailoverMetrics(t *testing.T) {
	const name = "metrics-alpha"
	wr, nr := createDR(t, name)
	ctx := ctxT(t)
	setRepl(t, nr, name, model.ReplStreaming, headRev(t, wr))
	c := failoverCounter()
	val := func(kind, outcome string) float64 {
		var m dto.Metric
		if err := c.WithLabelValues(kind, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	promoted, skipped := val("unplanned", model.FailoverPromoted), val("planned", model.FailoverSkipped)

	m, _ := manager(t, nr)
	if _, err := m.Failover(ctx, FailoverRequest{Instances: []string{name}}); err != nil {
		t.Fatal(err)
	}
	if got := val("unplanned", model.FailoverPromoted) - promoted; got != 1 {
		t.Errorf("unplanned promoted += %v, want 1", got)
	}
	if _, err := m.Failover(ctx, FailoverRequest{Instances: []string{name}, Planned: true}); err != nil {
		t.Logf("planned failover of a promoted instance: %v", err)
	}
	if got := val("planned", model.FailoverSkipped) - skipped; got != 1 {
		t.Errorf("planned skipped += %v, want 1", got)
	}
}
