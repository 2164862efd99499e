package replicate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestBaseCopyThenStreaming(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "contoso", regA, regB, true)
	write(t, a.st, "contoso", 0, 1200) // more than one copy batch
	a.source(t, nil)
	st := waitEqual(t, a.st, b.st, "contoso")
	if st.BaseRev == 0 || st.Rev != st.BaseRev || st.Source != regA || st.Epoch != 1 {
		t.Errorf("after the base copy: state %+v, want streaming at the base revision from %s", st, regA)
	}
	d, err := b.st.Dir(context.Background(), "contoso")
	if err != nil {
		t.Fatal(err)
	}
	if d.Role != model.RoleSecondary || d.Primary != regA {
		t.Errorf("destination entry %+v, want secondary of %s", d, regA)
	}
	if name, err := b.st.ResolveScope(context.Background(), d.IDScope); err != nil || name != "contoso" {
		t.Errorf("destination scope key: %q, %v", name, err)
	}
	// Changes: new records, updates, deletions.
	write(t, a.st, "contoso", 1100, 200)
	err = a.st.Update(context.Background(), "contoso", func(tx *store.Tx) error {
		for i := range 10 {
			tx.Delete(store.Key("contoso", store.KindEnrollment, fmt.Sprintf("id-%05d", i)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st2 := waitEqual(t, a.st, b.st, "contoso")
	if st2.BaseRev != st.BaseRev || st2.Rev <= st.Rev {
		t.Errorf("streaming: state %+v after %+v, want the same base and a later revision", st2, st)
	}
	// The destination is read-only for its own writers: fenced.
	err = b.st.Update(context.Background(), "contoso", func(tx *store.Tx) error {
		return tx.Put(store.Key("contoso", store.KindEnrollment, "local"), "x")
	})
	if !errors.Is(err, store.ErrFenced) {
		t.Errorf("write at the secondary: %v, want ErrFenced", err)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "resume", regA, regB, true)
	write(t, a.st, "resume", 0, 50)
	src := a.source(t, nil)
	st1 := waitEqual(t, a.st, b.st, "resume")
	src.Close()
	write(t, a.st, "resume", 50, 50)
	a.source(t, nil)
	st2 := waitEqual(t, a.st, b.st, "resume")
	if st2.BaseRev != st1.BaseRev {
		t.Errorf("restart made a new base copy at %d (was %d): want a resume", st2.BaseRev, st1.BaseRev)
	}
	if st2.Rev <= st1.Rev {
		t.Errorf("revision %d after the restart, was %d", st2.Rev, st1.Rev)
	}
}

func TestCompactionForcesBaseCopy(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "compact", regA, regB, true)
	write(t, a.st, "compact", 0, 50)
	src := a.source(t, nil)
	st1 := waitEqual(t, a.st, b.st, "compact")
	src.Close()
	write(t, a.st, "compact", 50, 50)
	err := a.st.Update(context.Background(), "compact", func(tx *store.Tx) error {
		tx.Delete(store.Key("compact", store.KindEnrollment, "id-00003"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.st.Client().Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.st.Client().Compact(context.Background(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	a.source(t, nil)
	st2 := waitEqual(t, a.st, b.st, "compact")
	if st2.BaseRev <= st1.BaseRev {
		t.Errorf("base revision %d after compaction, was %d: want a fresh base copy", st2.BaseRev, st1.BaseRev)
	}
	write(t, a.st, "compact", 100, 10)
	waitEqual(t, a.st, b.st, "compact")
}

// etcdRevision is the store's current revision: unchanged means nothing
// was written.
func etcdRevision(t *testing.T, st *store.Store) int64 {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestSinkRefuses(t *testing.T) {
	rs := newRegions(t, regA, regB, regC)
	a, b, c := rs[regA], rs[regB], rs[regC]
	d := createInstance(t, a.st, "guarded", regA, regB, true)
	write(t, a.st, "guarded", 0, 5)
	src := a.source(t, nil)
	waitEqual(t, a.st, b.st, "guarded")
	src.Close()
	ctx := context.Background()
	var hello HelloAnswer
	if err := post(ctx, a, regB, helloPath("guarded"), Hello{Source: regA, Epoch: 1, Dir: d}, &hello); err != nil {
		t.Fatal(err)
	}
	good := Batch{Source: regA, Epoch: 1, Dir: d, Token: hello.Token, Kind: KindChanges,
		FromRev: hello.State.Rev, ToRev: hello.State.Rev + 1,
		Ops: []Op{{Rev: hello.State.Rev + 1, Key: store.Key("guarded", store.KindEnrollment, "evil"), Value: []byte(`{}`)}}}
	cDir := d
	cDir.Primary, cDir.Secondary = regC, regB
	old := d
	old.Epoch = 0
	cases := []struct {
		name   string
		from   *region
		mutate func(*Batch)
	}{
		{"wrong region claiming the primary", c, func(*Batch) {}},
		{"wrong region as itself", c, func(b *Batch) { b.Source, b.Dir = regC, cDir }},
		{"old epoch", a, func(b *Batch) { b.Epoch, b.Dir = 0, old }},
		{"stale token", a, func(b *Batch) { b.Token-- }},
		{"gap", a, func(b *Batch) { b.FromRev--; b.Ops[0].Rev-- }},
		{"key outside the instance", a, func(b *Batch) { b.Ops[0].Key = store.ConfKey("other") }},
		{"reset at the same epoch by another region", c, func(b *Batch) {
			b.Source, b.Dir, b.Kind, b.Reset, b.BaseRev = regC, cDir, KindCopy, true, 5
		}},
		{"reset at a newer epoch from outside the pair", c, func(b *Batch) {
			b.Source, b.Dir, b.Kind, b.Reset, b.BaseRev = regC, cDir, KindCopy, true, 5
			b.Epoch, b.Dir.Epoch = 5, 5
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := etcdRevision(t, b.st)
			bad := good
			bad.Ops = append([]Op(nil), good.Ops...)
			tc.mutate(&bad)
			err := post(ctx, tc.from, regB, applyPath("guarded"), &bad, &ApplyAnswer{})
			if !errors.Is(err, ErrRefused) {
				t.Errorf("apply: %v, want a refusal (409)", err)
			}
			if after := etcdRevision(t, b.st); after != before {
				t.Errorf("the destination's revision moved from %d to %d: something was written", before, after)
			}
		})
	}
	// The destination at a higher epoch refuses the old primary's batch.
	newer := d
	newer.Epoch, newer.Role = 2, model.RoleSecondary
	if err := putJSON(ctx, b.st, store.DirKey("guarded"), newer); err != nil {
		t.Fatal(err)
	}
	before := etcdRevision(t, b.st)
	if err := post(ctx, a, regB, applyPath("guarded"), &good, &ApplyAnswer{}); !errors.Is(err, ErrRefused) {
		t.Errorf("apply at an old epoch: %v, want a refusal", err)
	}
	if after := etcdRevision(t, b.st); after != before {
		t.Errorf("old-epoch batch wrote something (revision %d -> %d)", before, after)
	}
	// The good batch is the control: it applies at the right epoch.
	if err := putJSON(ctx, b.st, store.DirKey("guarded"), func() model.DirEntry { x := d; x.Role = model.RoleSecondary; return x }()); err != nil {
		t.Fatal(err)
	}
	if err := post(ctx, a, regB, applyPath("guarded"), &good, &ApplyAnswer{}); err != nil {
		t.Errorf("the control batch was refused: %v", err)
	}
}

// post sends body from region from to region to.
func post(ctx context.Context, from *region, to, path string, body, out any) error {
	st := &streamer{s: &Source{cfg: Config{Peer: from.peer}}, dir: model.DirEntry{Secondary: to}}
	return st.post(ctx, path, body, out)
}

func TestResidencyInstanceIsNeverRead(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	res := createInstance(t, a.st, "canary-residency", regA, "", false)
	write(t, a.st, "canary-residency", 0, 20)
	createInstance(t, a.st, "withdr", regA, regB, true)
	write(t, a.st, "withdr", 0, 20)
	var mu sync.Mutex
	var touched []string
	a.source(t, func(s *Source) {
		s.access = func(op, key string) {
			mu.Lock()
			touched = append(touched, op+" "+key)
			mu.Unlock()
		}
	})
	waitEqual(t, a.st, b.st, "withdr")
	write(t, a.st, "canary-residency", 20, 20)
	write(t, a.st, "withdr", 20, 5)
	waitEqual(t, a.st, b.st, "withdr")
	mu.Lock()
	defer mu.Unlock()
	sawDR := false
	for _, k := range touched {
		if strings.Contains(k, store.InstancePrefix("withdr")) {
			sawDR = true
		}
		if strings.Contains(k, "canary-residency") || strings.HasSuffix(k, store.ScopeKey(res.IDScope)) {
			t.Errorf("the source issued %q on the residency instance", k)
		}
	}
	if !sawDR {
		t.Errorf("the access hook saw no read of the DR instance (%v): the assertion is void", touched)
	}
	all, err := b.st.Client().Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range all.Kvs {
		if strings.Contains(string(kv.Key), "canary") || strings.Contains(string(kv.Value), "canary") ||
			strings.Contains(string(kv.Key), strings.ToLower(res.IDScope)) {
			t.Errorf("the destination holds %s", kv.Key)
		}
	}
}

func TestLagReturnsToZero(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "lag", regA, regB, true)
	var acked atomic.Int64
	a.source(t, func(s *Source) { s.acked = func(ats []time.Time) { acked.Add(int64(len(ats))) } })
	waitEqual(t, a.st, b.st, "lag")
	write(t, a.st, "lag", 0, 300)
	waitEqual(t, a.st, b.st, "lag")
	if acked.Load() == 0 {
		t.Fatal("no batch of changes was acknowledged")
	}
	g := defaultMetrics().lag.WithLabelValues("lag", regB)
	eventually(t, "lag gauge at 0", func() bool { return gaugeValue(t, g) == 0 })
	eventually(t, "status caught up", func() bool {
		var rs model.ReplStatus
		ok, err := a.st.Get(context.Background(), store.ReplStatusKey("lag"), &rs)
		return err == nil && ok && rs.Connected && rs.AckedRev == rs.SourceRev && rs.LagMs == 0 && rs.AckedRev > 0
	})
	var contact time.Time
	if ok, err := a.st.Get(context.Background(), store.PeerContactKey(regB), &contact); err != nil || !ok || time.Since(contact) > time.Minute {
		t.Errorf("peer contact %v (%v, %v), want a recent handshake", contact, ok, err)
	}
	var m dto.Metric
	if err := defaultMetrics().batchLag.WithLabelValues(regA, regB).(prometheus.Histogram).Write(&m); err != nil || m.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("no batch lag observed (%v)", err)
	}
}

func TestConcurrentWritesConverge(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "busy", regA, regB, true)
	write(t, a.st, "busy", 0, 100)
	a.source(t, nil)
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				key := store.Key("busy", store.KindEnrollment, fmt.Sprintf("id-%05d", (w*37+i)%150))
				err := a.st.Update(context.Background(), "busy", func(tx *store.Tx) error {
					if i%5 == 4 {
						tx.Delete(key)
						return nil
					}
					return tx.Put(key, map[string]int{"w": w, "i": i})
				})
				if err != nil && !errors.Is(err, store.ErrConflict) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitEqual(t, a.st, b.st, "busy")
}

func TestDeletionReplicates(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	d := createInstance(t, a.st, "gone", regA, regB, true)
	write(t, a.st, "gone", 0, 10)
	a.source(t, nil)
	waitEqual(t, a.st, b.st, "gone")
	if err := a.st.DeleteInstance(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion at the destination", func() bool {
		snap := snapshot(t, b.st, "gone")
		n, _ := b.st.Count(context.Background(), store.InstancePrefix("gone"))
		taken, _ := b.st.ScopeTaken(context.Background(), d.IDScope)
		return len(snap) == 0 && n == 0 && !taken
	})
}

// A destination promoted to a higher epoch demotes the old primary at its
// next handshake; the new primary's stream demotes it through the sink and
// copies back.
func TestFailoverDemotesOldPrimary(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	d := createInstance(t, a.st, "moved", regA, regB, true)
	write(t, a.st, "moved", 0, 10)
	src := a.source(t, nil)
	st := waitEqual(t, a.st, b.st, "moved")
	// Failover: B becomes primary at epoch 2.
	promoted := d
	promoted.Primary, promoted.Secondary, promoted.Epoch, promoted.Role = regB, regA, 2, model.RolePrimary
	if err := putJSON(context.Background(), b.st, store.DirKey("moved"), promoted); err != nil {
		t.Fatal(err)
	}
	eventually(t, "old primary demoted by its idle handshake", func() bool { return len(a.demoter.demotions()) > 0 })
	got := a.demoter.demotions()[0]
	if got.instance != "moved" || got.dir.Epoch != 2 || got.dir.Primary != regB || got.acked != st.Rev {
		t.Errorf("demotion %+v, want moved at epoch 2 of %s with acked revision %d", got, regB, st.Rev)
	}
	src.Close()
	// Failback direction: A is secondary now; B's stream copies back.
	write(t, b.st, "moved", 100, 5)
	b.source(t, nil)
	waitEqual(t, b.st, a.st, "moved")
}

func TestStartGate(t *testing.T) {
	rs := newRegions(t, regA)
	a := rs[regA]
	createInstance(t, a.st, "gated", regA, regB, true)
	createInstance(t, a.st, "local", regA, "", false)
	g := NewStartGate(a.st, time.Now(), time.Hour)
	a.st.SetWriteGate(g.Check)
	t.Cleanup(func() { a.st.SetWriteGate(nil) })
	put := func(inst string) error {
		return a.st.Update(context.Background(), inst, func(tx *store.Tx) error {
			return tx.Put(store.Key(inst, store.KindEnrollment, "x"), "v")
		})
	}
	if err := put("gated"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write before contact: %v, want ErrUnavailable", err)
	}
	if err := put("local"); err != nil {
		t.Errorf("write of a residency instance: %v, want no gate", err)
	}
	// A contact older than the start does not open it; a newer one does.
	if err := putJSON(context.Background(), a.st, store.PeerContactKey(regB), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(gateRecheck)
	if err := put("gated"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("write after an old contact: %v, want ErrUnavailable", err)
	}
	if err := putJSON(context.Background(), a.st, store.PeerContactKey(regB), time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gate open after contact", func() bool { return put("gated") == nil })
	// The grace period opens it without contact.
	g2 := NewStartGate(a.st, time.Now(), 150*time.Millisecond)
	d := &model.DirEntry{Name: "other", Primary: regA, Secondary: regC, DREnabled: true, Role: model.RolePrimary}
	if err := g2.Check(context.Background(), d); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("fresh gate: %v, want ErrUnavailable", err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := g2.Check(context.Background(), d); err != nil {
		t.Errorf("after the grace: %v", err)
	}
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// While the destination is unreachable the stream retries with backoff,
// reports itself disconnected and its lag grows; once it is back, the
// stream resumes and the lag returns to 0.
func TestReconnectAfterOutage(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "outage", regA, regB, true)
	a.source(t, nil)
	st1 := waitEqual(t, a.st, b.st, "outage")
	b.down.Store(true)
	write(t, a.st, "outage", 0, 20)
	g := defaultMetrics().lag.WithLabelValues("outage", regB)
	eventually(t, "lag above 0 while the destination is down", func() bool { return gaugeValue(t, g) > 0 })
	eventually(t, "status disconnected", func() bool {
		var rs model.ReplStatus
		ok, err := a.st.Get(context.Background(), store.ReplStatusKey("outage"), &rs)
		return err == nil && ok && !rs.Connected && rs.Error != "" && rs.LagMs > 0
	})
	time.Sleep(300 * time.Millisecond)
	b.down.Store(false)
	st2 := waitEqual(t, a.st, b.st, "outage")
	if st2.BaseRev != st1.BaseRev {
		t.Errorf("the outage caused a new base copy (%d, was %d): want a resume", st2.BaseRev, st1.BaseRev)
	}
	eventually(t, "lag back at 0", func() bool { return gaugeValue(t, g) == 0 })
}

// An idle stream moves the destination's revision forward, so a restart
// after the source compacted past the last change resumes without a new
// base copy.
func TestIdleStreamSurvivesCompaction(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "idle", regA, regB, true)
	createInstance(t, a.st, "idle-busy", regA, "", false)
	write(t, a.st, "idle", 0, 5)
	src := a.source(t, func(s *Source) { s.progressEvery = 10 * time.Millisecond })
	st1 := waitEqual(t, a.st, b.st, "idle")
	write(t, a.st, "idle-busy", 0, 30) // moves the source's revision, not the instance
	target := etcdRevision(t, a.st)
	eventually(t, "idle destination moved to the source's revision", func() bool {
		var st model.ReplState
		ok, err := b.st.Get(context.Background(), store.ReplStateKey("idle"), &st)
		return err == nil && ok && st.Rev >= target
	})
	src.Close()
	if _, err := a.st.Client().Compact(context.Background(), etcdRevision(t, a.st), clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	a.source(t, nil)
	write(t, a.st, "idle", 5, 5)
	st2 := waitEqual(t, a.st, b.st, "idle")
	if st2.BaseRev != st1.BaseRev {
		t.Errorf("new base copy at %d (was %d) after compaction of an idle stream: want a resume", st2.BaseRev, st1.BaseRev)
	}
}

// Two nodes of a region campaign; one replicates; when it stops, the other
// takes over and resumes the stream.
func TestElectionHandsOver(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "elected", regA, regB, true)
	s1 := a.source(t, nil)
	eventually(t, "first source elected", s1.Leading)
	s2 := a.source(t, nil)
	st1 := waitEqual(t, a.st, b.st, "elected")
	if s2.Leading() {
		t.Fatal("two replicators lead the region")
	}
	s1.Close()
	eventually(t, "second source elected", s2.Leading)
	write(t, a.st, "elected", 0, 10)
	st2 := waitEqual(t, a.st, b.st, "elected")
	if st2.BaseRev != st1.BaseRev {
		t.Errorf("hand-over made a new base copy (%d, was %d)", st2.BaseRev, st1.BaseRev)
	}
}

// The old primary was down during the failover: the new primary's stream
// reaches it with a higher epoch, its sink demotes it (with the revision
// the new primary had from it) and the base copy makes it equal.
func TestNewPrimaryStreamDemotesOldPrimary(t *testing.T) {
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	d := createInstance(t, a.st, "back", regA, regB, true)
	write(t, a.st, "back", 0, 10)
	src := a.source(t, nil)
	st := waitEqual(t, a.st, b.st, "back")
	src.Close()
	write(t, a.st, "back", 10, 3) // accepted by A after its last replication: lost
	promoted := d
	promoted.Primary, promoted.Secondary, promoted.Epoch, promoted.Role = regB, regA, 2, model.RolePrimary
	if err := putJSON(context.Background(), b.st, store.DirKey("back"), promoted); err != nil {
		t.Fatal(err)
	}
	write(t, b.st, "back", 100, 5)
	b.source(t, nil)
	waitEqual(t, b.st, a.st, "back")
	calls := a.demoter.demotions()
	if len(calls) != 1 || calls[0].dir.Epoch != 2 || calls[0].dir.Primary != regB || calls[0].acked != st.Rev {
		t.Errorf("demotions %+v, want one to epoch 2 of %s acknowledged at %d", calls, regB, st.Rev)
	}
	if d, _ := a.st.Dir(context.Background(), "back"); d == nil || d.Role != model.RoleSecondary || d.Epoch != 2 {
		t.Errorf("old primary's entry %+v, want secondary at epoch 2", d)
	}
}
