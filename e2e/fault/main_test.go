package fault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// Environment of the suite.
const (
	// SeedsEnv runs seeds 1..N (default 20).
	SeedsEnv = "OPENDPS_FAULT_SEEDS"
	// EpisodesEnv is the number of fault episodes per seed (default 1:
	// seed s runs fault (s-1) mod 5 first, so 20 seeds run each fault four
	// times; 5: every fault in a seeded order).
	EpisodesEnv = "OPENDPS_FAULT_EPISODES"
	// SeedEnv runs this one seed (a reproducer).
	SeedEnv = "OPENDPS_FAULT_SEED"
	// ReportEnv names a file to write the results table to (Markdown).
	ReportEnv = "OPENDPS_FAULT_REPORT"
	// ArtifactsEnv is where histories and visualizations of failed seeds
	// go (default: $OPENDPS_ARTIFACTS/fault, scripts/test's CI artifacts,
	// else a new directory under the system temp dir). When set, every
	// seed's history is written there.
	ArtifactsEnv = "OPENDPS_FAULT_ARTIFACTS"
	// CommonArtifactsEnv is the artifacts directory of every suite
	// (scripts/test sets it).
	CommonArtifactsEnv = "OPENDPS_ARTIFACTS"
	// FaultsEnv restricts the faults run per seed (comma-separated, e.g.
	// "freeze,partition").
	FaultsEnv = "OPENDPS_FAULT_ONLY"
	// ServeArgsEnv adds arguments to every node's `opendps serve` (space
	// separated), e.g. "--etcd-election-timeout 500ms --etcd-heartbeat 50ms".
	ServeArgsEnv = "OPENDPS_FAULT_SERVE_ARGS"
	// EnforceEnv, when "1", fails the test on missed performance targets
	// (write pause, degraded throughput), not only on safety violations.
	EnforceEnv = "OPENDPS_FAULT_ENFORCE"
)

const (
	defaultSeeds    = 20
	defaultEpisodes = 1
)

// seedResult is what one seed found.
type seedResult struct {
	Seed       int64
	Episodes   []*Episode
	Ops        int
	AckWrites  int
	Unknown    int
	Keys       int
	Illegal    []string
	Lost       []string
	Diverged   []string
	Duration   time.Duration
	Visualized string
}

// TestZoneFaults is the availability-zone fault suite of issue 5: per seed
// a fresh three-zone region under load goes through every fault of
// allFaults in a seeded order; the seed's history must be linearizable
// and keep every acknowledged write in every member.
func TestZoneFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: starts three opendps processes per seed")
	}
	seeds := suiteSeeds(t)
	t.Logf("seeds %v, faults %v, phases %+v", seeds, allFaults, defaultPhases)
	var results []*seedResult
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := runSeed(t, seed)
			results = append(results, r)
		})
	}
	report(t, results)
}

func suiteFaults(t *testing.T) []FaultKind {
	s := os.Getenv(FaultsEnv)
	if s == "" {
		return allFaults
	}
	var out []FaultKind
	for _, f := range strings.Split(s, ",") {
		if !slices.Contains(allFaults, FaultKind(f)) {
			t.Fatalf("%s: unknown fault %q (know %v)", FaultsEnv, f, allFaults)
		}
		out = append(out, FaultKind(f))
	}
	return out
}

func suiteEpisodes(t *testing.T) int {
	s := os.Getenv(EpisodesEnv)
	if s == "" {
		return defaultEpisodes
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", EpisodesEnv, s)
	}
	return n
}

// seedFaults is the faults seed runs, n of them: starting with fault
// (seed-1) mod len(faults), so that consecutive seeds cover every fault
// evenly, then the rest in a seeded order, repeating when n > len(faults).
func seedFaults(faults []FaultKind, n int, seed int64, rng *rand.Rand) []FaultKind {
	first := faults[int((seed-1)%int64(len(faults)))]
	var rest []FaultKind
	for _, k := range rng.Perm(len(faults)) {
		if faults[k] != first {
			rest = append(rest, faults[k])
		}
	}
	out := []FaultKind{first}
	for i := 0; len(out) < n; i++ {
		if len(rest) == 0 {
			out = append(out, first)
			continue
		}
		out = append(out, rest[i%len(rest)])
	}
	return out
}

func suiteSeeds(t *testing.T) []int64 {
	if s := os.Getenv(SeedEnv); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		return []int64{n}
	}
	n := defaultSeeds
	if s := os.Getenv(SeedsEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", SeedsEnv, s)
		}
	}
	seeds := make([]int64, n)
	for i := range seeds {
		seeds[i] = int64(i + 1)
	}
	return seeds
}

// runSeed runs one seed: cluster, workload, the faults, the checks.
func runSeed(t *testing.T, seed int64) *seedResult {
	began := time.Now()
	res := &seedResult{Seed: seed}
	c := cluster.New(t, cluster.Config{Nodes: 3, Zones: []string{"1", "2", "3"}, Region: "westeurope", Instance: "fault",
		ExtraArgs: strings.Fields(os.Getenv(ServeArgsEnv))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w, err := newWorkload(ctx, c, seed)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(wctx) }()
	stopped := false
	stopWorkload := func() {
		if !stopped {
			stopped = true
			stop()
			<-done
		}
	}
	defer stopWorkload()

	rng := rand.New(rand.NewPCG(uint64(seed), 0xfa))
	in := &injector{c: c, w: w, rng: rng, ph: defaultPhases, log: t.Logf}
	sleep(ctx, time.Second) // warm up: connections, caches
	for i, f := range seedFaults(suiteFaults(t), suiteEpisodes(t), seed, rng) {
		ep := &Episode{Seed: seed, Index: i, Fault: f}
		res.Episodes = append(res.Episodes, ep)
		if err := in.episode(ctx, ep); err != nil {
			t.Errorf("seed %d: %v", seed, err)
			break
		}
	}
	stopWorkload()
	check(t, ctx, c, w, res)
	res.Duration = time.Since(began)
	return res
}

// check runs the set check and the linearizability check of a seed and
// fills res.
func check(t *testing.T, ctx context.Context, c *cluster.Cluster, w *workload, res *seedResult) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.WaitHealthy(rctx); err != nil {
		t.Errorf("seed %d: the cluster is not healthy at the end: %v", res.Seed, err)
	}
	ops := w.h.Ops()
	states, err := finalStates(rctx, c, w.h, ops)
	if err != nil {
		t.Fatalf("seed %d: read members: %v", res.Seed, err)
	}
	res.Lost, res.Diverged = setCheck(ops, states, c.Name)
	finalReads(ops, states, w.h)
	all := w.h.Ops()
	res.tally(ops, all)
	for _, ep := range res.Episodes {
		t.Logf("seed %d episode %d: %s of %s (%s): write pause %v, %.0f ops/s healthy, %.0f degraded, heal to healthy %v",
			res.Seed, ep.Index, ep.Fault, c.Name(ep.Node), ep.Role, ep.Pause.Round(time.Millisecond),
			ep.HealthyRate, ep.DegradedRate, ep.Recovery.Round(time.Millisecond))
	}
	lin, err := checkLinearizable(all, artifactsDir, fmt.Sprintf("seed-%d", res.Seed), 30*time.Second)
	if err != nil {
		t.Errorf("seed %d: visualization: %v", res.Seed, err)
	}
	res.Keys, res.Illegal, res.Visualized = lin.Keys, lin.Illegal, lin.Visualization
	if len(lin.Inconclusive) > 0 {
		t.Logf("seed %d: linearizability check gave up (timeout) on %d keys: %v", res.Seed, len(lin.Inconclusive), lin.Inconclusive)
	}
	complain(t, res, all)
	if t.Failed() || os.Getenv(ArtifactsEnv) != "" {
		for i := range c.N() {
			if b, err := os.ReadFile(c.LogPath(i)); err == nil {
				os.WriteFile(filepath.Join(artifactsDir(), fmt.Sprintf("seed-%d-%s.log", res.Seed, c.Name(i))), b, 0o644)
			}
		}
		path := filepath.Join(artifactsDir(), fmt.Sprintf("seed-%d-history.txt", res.Seed))
		if err := writeHistory(path, all, res.Episodes, w.probeLog()); err != nil {
			t.Logf("seed %d: history: %v", res.Seed, err)
		} else {
			t.Logf("seed %d: history written to %s (rerun: %s=%d go test -run TestZoneFaults ./e2e/fault/)", res.Seed, path, SeedEnv, res.Seed)
		}
	}
	t.Logf("seed %d: %d ops (%d acknowledged writes, %d unknown), %d keys checked, %d lost, %d illegal",
		res.Seed, res.Ops, res.AckWrites, res.Unknown, res.Keys, len(res.Lost), len(res.Illegal))
}

// finalStates reads every member; members that differ are read again once
// after 3 s, as a registration job of an unknown register may still have
// been finishing.
func finalStates(ctx context.Context, c *cluster.Cluster, h *History, ops []Op) ([]memberState, error) {
	states, err := readMembers(ctx, c, h)
	if err != nil {
		return nil, err
	}
	if _, diverged := setCheck(ops, states, c.Name); len(diverged) == 0 {
		return states, nil
	}
	sleep(ctx, 3*time.Second)
	return readMembers(ctx, c, h)
}

// tally counts the workload's operations and measures the episodes (on
// the history with the final reads).
func (res *seedResult) tally(ops, all []Op) {
	for _, ep := range res.Episodes {
		ep.measure(all)
	}
	for _, op := range ops {
		res.Ops++
		if op.Kind.Write() && op.Outcome == history.OK {
			res.AckWrites++
		}
		if op.Outcome == history.Unknown {
			res.Unknown++
		}
	}
}

// complain fails t for every safety violation of res, showing the
// history of the first offending keys.
func complain(t *testing.T, res *seedResult, all []Op) {
	for _, l := range res.Lost {
		t.Errorf("seed %d: LOST WRITE: %s", res.Seed, l)
	}
	for _, d := range res.Diverged {
		t.Errorf("seed %d: MEMBERS DIVERGE: %s", res.Seed, d)
	}
	if len(res.Illegal) == 0 {
		return
	}
	t.Errorf("seed %d: NOT LINEARIZABLE: %d keys %v; porcupine visualization: %s", res.Seed, len(res.Illegal), res.Illegal, res.Visualized)
	shown := res.Illegal[:min(len(res.Illegal), 2)]
	for _, op := range all {
		if slices.Contains(shown, op.Key) && op.Kind != history.FinalRead {
			t.Logf("  %s", op)
		}
	}
}

var artifacts struct {
	dir string
}

// artifactsDir is the directory of histories, logs and visualizations
// (ArtifactsEnv), made on first use.
func artifactsDir() string {
	if artifacts.dir == "" {
		switch d, common := os.Getenv(ArtifactsEnv), os.Getenv(CommonArtifactsEnv); {
		case d != "":
			artifacts.dir = d
		case common != "":
			artifacts.dir = filepath.Join(common, "fault")
		default:
			d, err := os.MkdirTemp("", "opendps-fault-")
			if err != nil {
				d = os.TempDir()
			}
			artifacts.dir = d
		}
		os.MkdirAll(artifacts.dir, 0o755) // the seeds' logs are written into it first
	}
	return artifacts.dir
}

func writeHistory(path string, ops []Op, eps []*Episode, probes []string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, ep := range eps {
		fmt.Fprintf(f, "episode %d %s node%d (%s): start %v inject %v healed %v healthy %v\n",
			ep.Index, ep.Fault, ep.Node+1, ep.Role, ep.Start, ep.Inject, ep.Healed, ep.Healthy)
	}
	for _, p := range probes {
		fmt.Fprintln(f, "probe", p)
	}
	for _, op := range ops {
		fmt.Fprintln(f, op)
	}
	return nil
}
