package dr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// Environment of the suite.
const (
	// ReportEnv names a file to write the summary to (Markdown).
	ReportEnv = "OPENDPS_DR_REPORT"
	// NodesEnv is the number of nodes per region (default 1; 3 runs
	// every region in three zones).
	NodesEnv = "OPENDPS_DR_NODES"
	// LoadEnv is the length of each load phase (default 3s).
	LoadEnv = "OPENDPS_DR_LOAD"
	// WorkersEnv is the number of concurrent clients of each main
	// workload (default 4).
	WorkersEnv = "OPENDPS_DR_WORKERS"
	// RoundsEnv repeats the whole suite (default 1).
	RoundsEnv = "OPENDPS_DR_ROUNDS"
	// StrictReadsEnv, when "0", only logs a non-linearizable read history
	// (stale reads around a failover) instead of failing the suite.
	StrictReadsEnv = "OPENDPS_DR_STRICT_READS"
)

// suite is the configuration of a run.
type suite struct {
	nodes   int
	zones   []string
	load    time.Duration
	workers int
	rounds  int
}

func suiteFromEnv(t *testing.T) suite {
	s := suite{nodes: 1, zones: []string{"1"}, load: 3 * time.Second, workers: 4, rounds: 1}
	atoi := func(env string, dst *int) {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a positive number", env, v)
			}
			*dst = n
		}
	}
	atoi(NodesEnv, &s.nodes)
	atoi(WorkersEnv, &s.workers)
	atoi(RoundsEnv, &s.rounds)
	if s.nodes > 1 {
		s.zones = []string{"1", "2", "3"}
	}
	if v := os.Getenv(LoadEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration", LoadEnv, v)
		}
		s.load = d
	}
	return s
}

// summary is what one scenario measured.
type summary struct {
	Round    int
	Scenario string
	Ops      int // operations recorded in the scenario's window
	Acked    int // acknowledged writes among them
	// Missing: acknowledged writes the new primary does not hold, all of
	// them inside the reported window (Outside counts the others: each is
	// a failure).
	Missing, Outside int
	Failover         time.Duration // as the report says (0: none)
	LostWrites       int           // writes in the old primary's lost-writes report
	Notes            []string
}

const (
	we, ne, br, scus = "westeurope", "northeurope", "brazilsouth", "southcentralus"
	defaultInstance  = "default"
)

// serveArgs lets the suite fail over and back within seconds.
var serveArgs = []string{"--failover-cooldown=-1s"}

// TestDisaster is the disaster suite of issue 6 (see doc.go).
func TestDisaster(t *testing.T) {
	if testing.Short() {
		t.Skip("disaster suite: starts several regions of opendps processes")
	}
	s := suiteFromEnv(t)
	t.Logf("suite: %d node(s) per region, load phases of %v, %d workers, %d round(s)", s.nodes, s.load, s.workers, s.rounds)
	var sums []*summary
	for round := 1; round <= s.rounds; round++ {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			t.Run("region-loss", func(t *testing.T) { sums = append(sums, regionLossSuite(t, s, round)...) })
			t.Run("planned-and-cut-link", func(t *testing.T) { sums = append(sums, plannedAndCutSuite(t, s, round)...) })
		})
	}
	report(t, sums)
}

func newSummary(round int, name string) *summary { return &summary{Round: round, Scenario: name} }

func report(t *testing.T, sums []*summary) {
	var b strings.Builder
	fmt.Fprintln(&b, "| round | scenario | ops | acknowledged writes | missing (within window) | missing outside window | failover | lost writes | notes |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|---|---|")
	for _, s := range sums {
		fo := "-"
		if s.Failover > 0 {
			fo = s.Failover.Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %d | %s | %d | %s |\n", s.Round, s.Scenario, s.Ops, s.Acked, s.Missing, s.Outside, fo, s.LostWrites, strings.Join(s.Notes, "; "))
	}
	t.Logf("disaster suite summary:\n%s", b.String())
	if p := os.Getenv(ReportEnv); p != "" {
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Errorf("%s: %v", ReportEnv, err)
		}
	}
}

// randomToken is a distinctive lower-case canary token.
func randomToken() string {
	b := make([]byte, 5)
	rand.Read(b)
	return "zq" + hex.EncodeToString(b)
}

// sleepLoad lets a workload run for d (load, not a wait for a
// condition).
func sleepLoad(d time.Duration) { time.Sleep(d) }

// waitAcked waits until the workload has at least n acknowledged writes
// since since.
func waitAcked(ctx context.Context, h *History, load string, since time.Time, n int) error {
	return waitFor(ctx, 30*time.Second, func(context.Context) error {
		_, acked := countOK(h.Ops(), func(op Op) bool { return op.Load == load && op.Call.After(since) })
		if acked < n {
			return fmt.Errorf("%s: %d acknowledged writes since %s, want %d", load, acked, since.Format("15:04:05.000"), n)
		}
		return nil
	})
}

// failoverItem returns instance's item of rep.
func failoverItem(rep *dpsclient.FailoverReport, instance string) (dpsclient.FailoverItem, bool) {
	for _, it := range rep.Items {
		if it.Instance == instance {
			return it, true
		}
	}
	return dpsclient.FailoverItem{}, false
}

// isRefusal reports whether err is a 409 whose message contains want.
func isRefusal(err error, want string) bool {
	var ce *dpsclient.ControlError
	return errors.As(err, &ce) && ce.StatusCode == 409 && strings.Contains(ce.Message, want)
}

func logAbsent(t *testing.T, what string, ops []Op, st regionState, max int) {
	for i, l := range describeAbsent(ops, st) {
		if i == max {
			t.Logf("%s: ... %d more", what, len(ops)-max)
			break
		}
		t.Logf("%s: %s", what, l)
	}
}
