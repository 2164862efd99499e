package fault

import (
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Targets of issue 5.
const (
	targetPauseP99      = 2 * time.Second
	targetDegradedRatio = 0.8
)

// row aggregates the episodes of one fault kind hitting one role.
type row struct {
	fault FaultKind
	role  string
	eps   []*Episode
}

func (r *row) pauses() []time.Duration {
	var ps []time.Duration
	for _, ep := range r.eps {
		p := ep.Pause
		if p < 0 { // no acknowledged write before the end: count the whole run
			p = ep.Healthy - ep.Inject
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func (r *row) ratios() []float64 {
	var rs []float64
	for _, ep := range r.eps {
		if ep.HealthyRate > 0 && ep.DegradedRate > 0 {
			rs = append(rs, ep.DegradedRate/ep.HealthyRate)
		}
	}
	sort.Float64s(rs)
	return rs
}

// nearest-rank percentile of sorted xs.
func percentile[T any](xs []T, p float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func rows(results []*seedResult) ([]*row, int) {
	byKey := map[string]*row{}
	var out []*row
	skipped := 0
	for _, r := range results {
		for _, ep := range r.Episodes {
			if ep.Skipped != "" {
				skipped++
				continue
			}
			if ep.Healthy == 0 { // the seed stopped in this episode
				continue
			}
			k := string(ep.Fault) + "/" + ep.Role
			if byKey[k] == nil {
				byKey[k] = &row{fault: ep.Fault, role: ep.Role}
				out = append(out, byKey[k])
			}
			byKey[k].eps = append(byKey[k].eps, ep)
		}
	}
	order := map[FaultKind]int{}
	for i, f := range allFaults {
		order[f] = i
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].fault != out[j].fault {
			return order[out[i].fault] < order[out[j].fault]
		}
		return out[i].role < out[j].role
	})
	return out, skipped
}

// report prints the results table, writes it to $OPENDPS_FAULT_REPORT and
// checks the performance targets (enforced with $OPENDPS_FAULT_ENFORCE=1).
func report(t *testing.T, results []*seedResult) {
	if len(results) == 0 {
		return
	}
	rs, skipped := rows(results)
	tab, missed := table(rs)
	text := tab + "\n" + totals(results, skipped)
	t.Logf("results:\n%s", text)
	if path := os.Getenv(ReportEnv); path != "" {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, m := range missed {
		if os.Getenv(EnforceEnv) == "1" {
			t.Errorf("target missed: %s", m)
		} else {
			t.Logf("target missed (not enforced; %s=1 enforces): %s", EnforceEnv, m)
		}
	}
}

// table renders one line per fault and node role, and lists the targets
// missed: write pause p99 at most 2 s per zone loss (restarts excluded)
// and degraded throughput at least 80% of healthy.
func table(rs []*row) (string, []string) {
	var b strings.Builder
	fmt.Fprintf(&b, "| fault | node hit | runs | write pause p50 | p99 | max | healthy ops/s | degraded ops/s | degraded/healthy mean (min) | heal to healthy p50 (max) | unknown ops | failed ops |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var missed []string
	for _, r := range rs {
		ps, ratios := r.pauses(), r.ratios()
		var hr, dr []float64
		var rec []time.Duration
		unknown, failed := 0, 0
		for _, ep := range r.eps {
			hr, dr = append(hr, ep.HealthyRate), append(dr, ep.DegradedRate)
			rec = append(rec, ep.Recovery)
			unknown += ep.Unknown
			failed += ep.Failed
		}
		slices.Sort(rec)
		p99 := percentile(ps, 0.99)
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %.0f | %.0f | %.2f (%.2f) | %s (%s) | %d | %d |\n",
			r.fault, r.role, len(r.eps), ms(percentile(ps, 0.5)), ms(p99), ms(ps[len(ps)-1]),
			mean(hr), mean(dr), mean(ratios), percentile(ratios, 0), ms(percentile(rec, 0.5)), ms(rec[len(rec)-1]), unknown, failed)
		if r.fault != Restart && p99 > targetPauseP99 {
			missed = append(missed, fmt.Sprintf("%s/%s: write pause p99 %v > %v", r.fault, r.role, ms(p99), targetPauseP99))
		}
		if m := mean(ratios); m < targetDegradedRatio {
			missed = append(missed, fmt.Sprintf("%s/%s: degraded/healthy throughput %.2f < %.2f", r.fault, r.role, m, targetDegradedRatio))
		}
	}
	return b.String(), missed
}

// totals summarises the safety results of every seed.
func totals(results []*seedResult, skipped int) string {
	episodes, ops, acks, unknown, illegal, lost, diverged := 0, 0, 0, 0, 0, 0, 0
	var dur time.Duration
	for _, r := range results {
		for _, ep := range r.Episodes {
			if ep.Skipped == "" && ep.Healthy != 0 {
				episodes++
			}
		}
		ops, acks, unknown = ops+r.Ops, acks+r.AckWrites, unknown+r.Unknown
		illegal, lost, diverged = illegal+len(r.Illegal), lost+len(r.Lost), diverged+len(r.Diverged)
		dur += r.Duration
	}
	return fmt.Sprintf("%d seeds, %d fault episodes (%d skipped), %d operations, %d acknowledged writes, %d of unknown outcome; "+
		"linearizability violations: %d keys; acknowledged writes lost: %d; member divergences: %d; %v.\n",
		len(results), episodes, skipped, ops, acks, unknown, illegal, lost, diverged, dur.Round(time.Second))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Milliseconds())
}
