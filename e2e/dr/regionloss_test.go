package dr

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// regionLossSuite runs scenarios 1 (region loss), 3 (fencing on return,
// then a planned failback) and 2 (residency canaries) on one set of four
// regions: westeurope (primary of "default") paired with northeurope,
// brazilsouth (a residency instance with canary values) paired with
// southcentralus, and a front door over all of them in that order.
func regionLossSuite(t *testing.T, s suite, round int) []*summary {
	token := randomToken()
	canary := "res-" + token
	rs := cluster.NewRegions(t, cluster.RegionsConfig{
		Regions: []string{we, ne, br, scus}, Nodes: s.nodes, Zones: s.zones,
		Instances: []cluster.InstanceConfig{{Name: defaultInstance, Region: we}, {Name: canary, Region: br, DataResidency: true}},
		LogLevel:  "debug", ExtraArgs: serveArgs,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	fd, err := rs.StartFrontDoor()
	if err != nil {
		t.Fatal(err)
	}
	hc := rs.Region(we).HTTPClient()
	if err := waitStreaming(ctx, rs.Region(ne), defaultInstance, we, 1); err != nil {
		t.Fatal(err)
	}
	h := &History{}
	fdDef := frontDoorEndpoint(rs, fd, defaultInstance, hc)
	wDef, err := newWorkload(ctx, rs, h, workloadConfig{name: "fd", instance: defaultInstance, mix: writeMix, workers: s.workers, eps: []endpoint{fdDef}})
	if err != nil {
		t.Fatal(err)
	}
	wCan, err := newWorkload(ctx, rs, h, workloadConfig{name: "canary", instance: canary, prefix: token + "-", mix: fullMix, workers: 2,
		payload: json.RawMessage(`{"canary":"` + token + `-payload"}`), eps: []endpoint{frontDoorEndpoint(rs, fd, canary, hc)}})
	if err != nil {
		t.Fatal(err)
	}
	wCan.start(uint64(round)*1000 + 2)
	defer wCan.stopWait()
	wDef.start(uint64(round)*1000 + 1)
	defer wDef.stopWait()

	var sums []*summary
	var lost *lossResult
	if !t.Run("1-region-loss", func(t *testing.T) {
		sum := newSummary(round, "1 region loss (westeurope killed, failover to northeurope)")
		sums = append(sums, sum)
		lost = regionLoss(t, ctx, s, rs, fd, wDef, sum)
	}) || lost == nil {
		return sums
	}
	if !t.Run("3-fencing-return", func(t *testing.T) {
		sum := newSummary(round, "3 fencing: westeurope returns (direct writes to it)")
		sums = append(sums, sum)
		fencingReturn(t, ctx, s, rs, wDef, lost, sum)
	}) {
		return sums
	}
	t.Run("5-failback-planned", func(t *testing.T) {
		sum := newSummary(round, "5 planned failback home under load (northeurope to westeurope)")
		sums = append(sums, sum)
		planned(t, ctx, s, rs, []*workload{wDef}, ne, we, 2, lost.failedOverAt, sum)
	})
	wDef.stopWait()
	wCan.stopWait()
	t.Run("2-residency", func(t *testing.T) {
		sum := newSummary(round, "2 residency canaries (brazilsouth only)")
		sums = append(sums, sum)
		residency(t, ctx, rs, wCan, token, canary, sum)
	})
	return sums
}

// lossResult is what scenario 1 hands to scenario 3.
type lossResult struct {
	killedAt, failedOverAt time.Time
	item                   dpsclient.FailoverItem
	missing                []Op // acknowledged before the kill, absent in northeurope
}

// regionLoss is scenario 1.
func regionLoss(t *testing.T, ctx context.Context, s suite, rs *cluster.Regions, fd interface{ Addr(string) string }, w *workload, sum *summary) *lossResult {
	began := time.Now()
	if err := waitAcked(ctx, w.h, w.name, began, 20); err != nil {
		t.Fatal(err)
	}
	sleepLoad(s.load)
	// The link degrades first, then the region dies: what westeurope
	// accepts in between never reaches northeurope, so the window the
	// failover reports is not empty.
	if err := rs.CutLink(we, ne); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	if err := waitAcked(ctx, w.h, w.name, cutAt, 3); err != nil {
		t.Fatal(err)
	}
	sleepLoad(s.load / 3)
	killedAt := time.Now()
	if err := rs.KillRegion(we); err != nil {
		t.Fatal(err)
	}
	w.nextGeneration() // writes from now on never share a key with those before the kill
	if err := rs.MendLink(we, ne); err != nil {
		t.Fatal(err)
	}
	t.Logf("westeurope killed at %s (link cut at %s)", killedAt.Format("15:04:05.000"), cutAt.Format("15:04:05.000"))

	// The failover, as `opendps region failover --region westeurope` runs
	// it: a direct fence of westeurope first (2 s, best effort: it is
	// dead), then the promotion in northeurope.
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	_, ferr := rs.Region(we).Control(0).Fence(fctx, dpsclient.FenceRequest{Primary: we, NewPrimary: ne})
	fcancel()
	if ferr == nil {
		t.Errorf("direct fence of a killed region succeeded")
	}
	cmdStart := time.Now()
	rep, err := rs.Region(ne).Control(0).Failover(ctx, dpsclient.FailoverRequest{From: we})
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	failedOverAt := time.Now()
	it, ok := failoverItem(rep, defaultInstance)
	if !ok || it.Status != model.FailoverPromoted || it.Epoch != 2 {
		t.Fatalf("failover report %+v: want %s promoted at epoch 2", rep, defaultInstance)
	}
	sum.Failover = rep.Duration
	sum.Notes = append(sum.Notes, fmt.Sprintf("command %v; last replicated rev %d at %s, kill at %s",
		failedOverAt.Sub(cmdStart).Round(time.Millisecond), it.LastReplicatedRev, it.LastReplicatedTime.Format("15:04:05.000"), killedAt.Format("15:04:05.000")))
	for _, it := range rep.Items {
		if it.Instance != defaultInstance && it.Status == model.FailoverPromoted {
			t.Errorf("failover of westeurope promoted %s too", it.Instance)
		}
	}

	// Served from northeurope through the same front-door endpoint and ID
	// scope: new writes and new devices succeed.
	if err := waitAcked(ctx, w.h, w.name, failedOverAt, 10); err != nil {
		t.Fatalf("no writes through the front door after the failover: %v", err)
	}
	sleepLoad(s.load)
	newDevices := 0
	for _, op := range w.h.Ops() {
		if op.Load == w.name && op.Kind == history.Register && op.Outcome == history.OK && op.Call.After(failedOverAt) && strings.Contains(op.Key, "-g-") {
			newDevices++
		}
	}
	if newDevices == 0 {
		t.Errorf("no new device registered through the front door after the failover")
	}

	st, err := readState(ctx, rs.Region(ne), defaultInstance)
	if err != nil {
		t.Fatal(err)
	}
	ops := w.h.Ops()
	before := func(op Op) bool { return op.Load == w.name && op.Return.Before(killedAt) }
	missing := absent(ops, st, before)
	var outside []Op
	for _, op := range missing {
		if !op.Return.After(it.LastReplicatedTime) {
			outside = append(outside, op)
		}
	}
	sum.Ops, sum.Acked = countOK(ops, before)
	sum.Missing, sum.Outside = len(missing)-len(outside), len(outside)
	logAbsent(t, "missing in northeurope (within the reported window)", missing, st, 5)
	if len(outside) > 0 {
		logAbsent(t, "SILENT LOSS", outside, st, 20)
		t.Errorf("%d acknowledged writes are missing in northeurope although acknowledged before the reported last replicated time %s",
			len(outside), it.LastReplicatedTime.Format(time.RFC3339Nano))
	}

	// Old devices register again through the front door and get their hub.
	rechecked := 0
	for _, op := range ops {
		if rechecked == 8 || !before(op) || op.Kind != history.Register || op.Outcome != history.OK || st.registrations[op.Key] != op.Out {
			continue
		}
		rechecked++
		got := w.registerOnce(endpoint{name: "frontdoor", device: cluster.LocalEndpoint(fd.Addr("device"))}, op.Key, w.indivKey(op.Key))
		if got.Outcome != history.OK || got.Out != op.Out {
			t.Errorf("device %s registered before the kill on %q; again through the front door after the failover: %s", op.Key, op.Out, got)
		}
	}
	if rechecked == 0 {
		t.Errorf("no device registered before the kill to register again")
	}
	sum.Notes = append(sum.Notes, fmt.Sprintf("%d new devices after failover, %d old devices re-registered on their hub", newDevices, rechecked))
	return &lossResult{killedAt: killedAt, failedOverAt: failedOverAt, item: it, missing: missing}
}

// fencingReturn is scenario 3: westeurope comes back while clients write
// to its own endpoints.
func fencingReturn(t *testing.T, ctx context.Context, s suite, rs *cluster.Regions, wDef *workload, lost *lossResult, sum *summary) {
	var eps []endpoint
	for i := range rs.Region(we).N() {
		eps = append(eps, regionEndpoint(rs, we, defaultInstance, i))
	}
	setup := regionEndpoint(rs, ne, defaultInstance, 0)
	wWE, err := newWorkload(ctx, rs, wDef.h, workloadConfig{name: "we", instance: defaultInstance, mix: writeMix, workers: 2, eps: eps, setup: &setup})
	if err != nil {
		t.Fatal(err)
	}
	wWE.start(7)
	defer wWE.stopWait()
	restartAt := time.Now()
	if err := rs.StartRegion(ctx, we); err != nil {
		t.Fatal(err)
	}
	rep, err := waitLostWrites(ctx, rs.Region(we), defaultInstance, 2)
	if err != nil {
		t.Fatal(err)
	}
	demotedAt := time.Now()
	t.Logf("westeurope restarted at %s, ready and demoted (lost-writes report: %d writes after rev %d) %v later",
		restartAt.Format("15:04:05.000"), len(rep.Writes), rep.AckedRev, demotedAt.Sub(restartAt).Round(time.Millisecond))
	if err := waitAcked(ctx, wWE.h, wWE.name, demotedAt, 5); err != nil {
		t.Errorf("westeurope's endpoints do not serve the instance after its demotion (forwarding): %v", err)
	}
	sleepLoad(s.load)
	wWE.stopWait()

	st, err := readState(ctx, rs.Region(ne), defaultInstance)
	if err != nil {
		t.Fatal(err)
	}
	ops := wDef.h.Ops()
	// Every write acknowledged after the failover, through westeurope or
	// the front door, was accepted by northeurope: none was accepted by
	// westeurope at the old epoch.
	after := func(op Op) bool {
		return (op.Load == wWE.name || op.Load == wDef.name) && op.Call.After(lost.failedOverAt) && op.Return.Before(st.at)
	}
	notInNE := absent(ops, st, after)
	for _, op := range notInNE {
		t.Errorf("write acknowledged after the failover is not in northeurope (accepted by the fenced old primary?): %s", op)
	}
	old := keysWrittenBefore(ops, lost.failedOverAt)
	for _, op := range ops {
		if after(op) && op.Outcome == history.OK && op.Kind.Write() && !old[op.Key] && inLostWrites(op, defaultInstance, rep) {
			t.Errorf("write acknowledged after the failover is in westeurope's lost-writes report: %s", op)
		}
	}
	viaWE, ackedWE := countOK(ops, func(op Op) bool { return op.Load == wWE.name && op.Call.After(restartAt) })
	if ackedWE == 0 {
		t.Errorf("no write through westeurope's endpoints was acknowledged (forwarded) after it came back")
	}
	// The divergent writes of scenario 1 are in the report.
	var unreported []Op
	for _, op := range lost.missing {
		if !inLostWrites(op, defaultInstance, rep) {
			unreported = append(unreported, op)
		}
	}
	for _, op := range unreported {
		t.Errorf("acknowledged before the kill, never reached northeurope, and not in westeurope's lost-writes report: %s", op)
	}
	if rep.OldEpoch != 1 || rep.NewPrimary != ne || rep.Region != we {
		t.Errorf("lost-writes report %+v: want westeurope superseded at epoch 1 by northeurope", rep)
	}
	if ps, err := onePrimary(ctx, rs, rs.Names()); err != nil {
		t.Errorf("one primary per instance: %v", err)
	} else if got := ps[defaultInstance]; len(got) != 1 || !strings.HasPrefix(got[0], ne+"(primary,epoch 2)") {
		t.Errorf("primary of %s: %v, want northeurope at epoch 2", defaultInstance, got)
	}
	sum.Ops, sum.Acked = viaWE, ackedWE
	sum.LostWrites = len(rep.Writes)
	sum.Notes = append(sum.Notes, fmt.Sprintf("demoted %v after restart; %d of scenario 1's missing writes in the report; %d acknowledged writes after the failover checked in northeurope",
		demotedAt.Sub(restartAt).Round(time.Millisecond), len(lost.missing)-len(unreported), func() int { _, a := countOK(ops, after); return a }()))
}

// planned is scenario 5 on the workloads already running: a planned
// failover of "default" from `from` to `to` (the new epoch must be
// epoch+1) under load; every write acknowledged since `since` must be in
// the new primary, and the history since then linearizable.
func planned(t *testing.T, ctx context.Context, s suite, rs *cluster.Regions, ws []*workload, from, to string, epoch uint64, since time.Time, sum *summary) {
	if err := waitStreaming(ctx, rs.Region(to), defaultInstance, from, epoch); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.stop == nil {
			w.start(uint64(epoch) * 31)
		}
	}
	began := time.Now()
	if err := waitAcked(ctx, ws[0].h, ws[0].name, began, 10); err != nil {
		t.Fatal(err)
	}
	sleepLoad(s.load)
	rep, err := rs.Region(to).Control(0).InstanceFailover(ctx, defaultInstance, true, false)
	if err != nil {
		t.Fatalf("planned failover %s -> %s: %v", from, to, err)
	}
	it, ok := failoverItem(rep, defaultInstance)
	if !ok || it.Status != model.FailoverPromoted || it.Epoch != epoch+1 {
		t.Fatalf("planned failover report %+v: want promoted at epoch %d", rep, epoch+1)
	}
	failedOverAt := time.Now()
	sum.Failover = rep.Duration
	if err := waitAcked(ctx, ws[0].h, ws[0].name, failedOverAt, 10); err != nil {
		t.Errorf("no writes after the planned failover: %v", err)
	}
	sleepLoad(s.load)
	for _, w := range ws {
		w.stopWait()
	}
	st, err := readState(ctx, rs.Region(to), defaultInstance)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, w := range ws {
		names[w.name] = true
	}
	var ops []Op
	for _, op := range ws[0].h.Ops() {
		if names[op.Load] && op.Call.After(since) {
			ops = append(ops, op)
		}
	}
	all := func(Op) bool { return true }
	missing := absent(ops, st, all)
	sum.Ops, sum.Acked = countOK(ops, all)
	sum.Missing = len(missing)
	if len(missing) > 0 {
		logAbsent(t, "LOST by a planned failover", missing, st, 20)
		t.Errorf("%d acknowledged writes are missing in %s after a planned failover", len(missing), to)
	}
	keys, illegal, inconclusive := checkLinearizable(append(ops, finalReads(ops, st)...), 10*time.Second)
	if len(illegal) > 0 {
		// Reads are fenced on the directory entry like writes
		// (store.GetFenced): a stale read around a failover is a bug.
		// OPENDPS_DR_STRICT_READS=0 only logs it (to chase another bug).
		fail := t.Errorf
		if os.Getenv(StrictReadsEnv) == "0" {
			fail = t.Logf
		}
		sum.Notes = append(sum.Notes, fmt.Sprintf("NOT LINEARIZABLE: %d keys %v", len(illegal), illegal))
		fail("not linearizable: %d of %d keys: %v", len(illegal), keys, illegal)
		for _, op := range ops {
			if op.Key == illegal[0] {
				t.Logf("  %s", op)
			}
		}
	}
	if ps, err := onePrimary(ctx, rs, []string{from, to}); err != nil {
		t.Errorf("one primary per instance: %v", err)
	} else if got := ps[defaultInstance]; len(got) != 1 || !strings.HasPrefix(got[0], to+"(primary") {
		t.Errorf("primary of %s: %v, want %s", defaultInstance, got, to)
	}
	sum.Notes = append(sum.Notes, fmt.Sprintf("%d keys linearizable (%d inconclusive), drained to rev %d", keys-len(illegal)-len(inconclusive), len(inconclusive), it.LastReplicatedRev))
}

// residency is scenario 2.
func residency(t *testing.T, ctx context.Context, rs *cluster.Regions, w *workload, token, canary string, sum *summary) {
	ops := w.h.Ops()
	sum.Ops, sum.Acked = countOK(ops, loadIs(w.name))
	if sum.Acked == 0 {
		t.Errorf("the canary instance acknowledged no write through the front door")
	}
	canaries := append([]string{token}, w.canaryKeys()...)
	// The scans can see canaries: brazilsouth holds them.
	if _, leaks, err := scanEtcd(ctx, rs.Region(br), canaries); err != nil || len(leaks) == 0 {
		t.Errorf("brazilsouth's etcd: %d canaries found (err %v): the scan sees nothing", len(leaks), err)
	}
	var keys, lines, series int
	var leaks []leak
	for _, r := range []string{we, ne, scus} {
		c := rs.Region(r)
		k, l, err := scanEtcd(ctx, c, canaries)
		if err != nil {
			t.Errorf("%s etcd: %v", r, err)
		}
		keys += k
		leaks = append(leaks, l...)
		for i := range c.N() {
			n, l, err := scanLogs(c, i, canaries)
			if err != nil {
				t.Errorf("%s/%s log: %v", r, c.Name(i), err)
			}
			lines += n
			leaks = append(leaks, l...)
			if c.Running(i) {
				n, l, err := scanMetrics(ctx, c, i, canaries)
				if err != nil {
					t.Errorf("%s/%s metrics: %v", r, c.Name(i), err)
				}
				series += n
				leaks = append(leaks, l...)
			}
		}
	}
	for i, l := range leaks {
		if i == 20 {
			t.Errorf("... %d more leaks", len(leaks)-20)
			break
		}
		t.Errorf("CANARY OUTSIDE BRAZILSOUTH: %s", l)
	}
	// Its failover is refused, naming data residency.
	_, err := rs.Region(br).Control(0).InstanceFailover(ctx, canary, true, false)
	if !isRefusal(err, "data residency") {
		t.Errorf("planned failover of the residency instance: %v, want a 409 naming data residency", err)
	}
	_, err = rs.Region(br).Control(0).InstanceFailover(ctx, canary, false, true)
	if !isRefusal(err, "data residency") {
		t.Errorf("forced unplanned failover of the residency instance: %v, want a 409 naming data residency", err)
	}
	rep, err := rs.Region(scus).Control(0).Failover(ctx, dpsclient.FailoverRequest{From: br})
	if err == nil {
		for _, it := range rep.Items {
			if it.Status == model.FailoverPromoted {
				t.Errorf("region failover of brazilsouth at southcentralus promoted %s", it.Instance)
			}
		}
	}
	if es, err := dirEntries(ctx, rs.Region(br)); err != nil {
		t.Error(err)
	} else if d := es[canary]; d.Role != model.RolePrimary || d.DREnabled {
		t.Errorf("residency instance in brazilsouth: %+v, want primary without DR", d)
	}
	sum.Notes = append(sum.Notes, fmt.Sprintf("%d canaries; scanned %d etcd keys, %d log lines, %d metric series outside brazilsouth: %d leaks; failover refused",
		len(canaries), keys, lines, series, len(leaks)))
}
