package dr

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// plannedAndCutSuite runs scenario 5 (planned failover under load, then
// back home) and scenario 4 (fencing of a primary only cut off from its
// pair) on a fresh pair of regions.
func plannedAndCutSuite(t *testing.T, s suite, round int) []*summary {
	rs := cluster.NewRegions(t, cluster.RegionsConfig{
		Regions: []string{we, ne}, Nodes: s.nodes, Zones: s.zones,
		Instances: []cluster.InstanceConfig{{Name: defaultInstance, Region: we}},
		ExtraArgs: serveArgs,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := waitStreaming(ctx, rs.Region(ne), defaultInstance, we, 1); err != nil {
		t.Fatal(err)
	}
	h := &History{}
	// Clients of both regions: those of the secondary are forwarded.
	var eps []endpoint
	for _, r := range []string{we, ne} {
		for i := range rs.Region(r).N() {
			eps = append(eps, regionEndpoint(rs, r, defaultInstance, i))
		}
	}
	w, err := newWorkload(ctx, rs, h, workloadConfig{name: "pl", instance: defaultInstance, mix: fullMix, workers: s.workers, eps: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer w.stopWait()
	var sums []*summary
	began := time.Now()
	if !t.Run("5-planned-failover", func(t *testing.T) {
		sum := newSummary(round, "5 planned failover under load (westeurope to northeurope)")
		sums = append(sums, sum)
		planned(t, ctx, s, rs, []*workload{w}, we, ne, 1, began, sum)
	}) {
		return sums
	}
	if !t.Run("5-planned-failback", func(t *testing.T) {
		sum := newSummary(round, "5 planned failback under load (northeurope to westeurope)")
		sums = append(sums, sum)
		planned(t, ctx, s, rs, []*workload{w}, ne, we, 2, began, sum)
	}) {
		return sums
	}
	t.Run("4-fencing-cut-link", func(t *testing.T) {
		sum := newSummary(round, "4 fencing: link cut, direct fence, failover to northeurope")
		sums = append(sums, sum)
		cutLink(t, ctx, s, rs, h, sum)
	})
	return sums
}

// cutLink is scenario 4: westeurope (primary at epoch 3) is cut off from
// northeurope while its clients keep writing to it; the operator fences it
// through its control API and fails over to northeurope.
func cutLink(t *testing.T, ctx context.Context, s suite, rs *cluster.Regions, h *History, sum *summary) {
	const epoch = 3
	if err := waitStreaming(ctx, rs.Region(ne), defaultInstance, we, epoch); err != nil {
		t.Fatal(err)
	}
	var eps []endpoint
	for i := range rs.Region(we).N() {
		eps = append(eps, regionEndpoint(rs, we, defaultInstance, i))
	}
	w, err := newWorkload(ctx, rs, h, workloadConfig{name: "cut", instance: defaultInstance, mix: writeMix, workers: s.workers, eps: eps})
	if err != nil {
		t.Fatal(err)
	}
	w.start(44)
	defer w.stopWait()
	began := time.Now()
	if err := waitAcked(ctx, h, w.name, began, 10); err != nil {
		t.Fatal(err)
	}
	sleepLoad(s.load / 2)
	if err := rs.CutLink(we, ne); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	if err := waitAcked(ctx, h, w.name, cutAt, 5); err != nil {
		t.Fatalf("westeurope accepts nothing once cut off from its pair: %v", err)
	}
	sleepLoad(s.load / 2)

	// `opendps region failover --region westeurope` with westeurope's
	// control API reachable: the direct fence, then the promotion.
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	fres, err := rs.Region(we).Control(0).Fence(fctx, dpsclient.FenceRequest{Primary: we, Instances: []string{defaultInstance}, NewPrimary: ne})
	fcancel()
	if err != nil || len(fres.Items) != 1 || fres.Items[0].Status != model.FenceFenced {
		t.Fatalf("direct fence of westeurope: %+v, %v", fres, err)
	}
	fencedAt := time.Now()
	rep, err := rs.Region(ne).Control(0).Failover(ctx, dpsclient.FailoverRequest{From: we, Instances: []string{defaultInstance}, FencedDirectly: true})
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	failedOverAt := time.Now()
	it, ok := failoverItem(rep, defaultInstance)
	if !ok || it.Status != model.FailoverPromoted || it.Epoch != epoch+1 || !it.OldPrimaryFenced {
		t.Fatalf("failover report %+v: want promoted at epoch %d, old primary fenced", rep, epoch+1)
	}
	sum.Failover = rep.Duration
	sleepLoad(s.load / 2) // clients keep writing to the fenced, cut-off primary

	if err := rs.MendLink(we, ne); err != nil {
		t.Fatal(err)
	}
	lw, err := waitLostWrites(ctx, rs.Region(we), defaultInstance, epoch+1)
	if err != nil {
		t.Fatal(err)
	}
	demotedAt := time.Now()
	if err := waitAcked(ctx, h, w.name, demotedAt, 5); err != nil {
		t.Errorf("westeurope's endpoints do not serve the instance after its demotion (forwarding): %v", err)
	}
	w.stopWait()

	ops := h.Ops()
	mine := func(op Op) bool { return op.Load == w.name }
	// No write issued after the fence was accepted by westeurope: until
	// its demotion it refuses them (link cut: it cannot forward), after
	// it forwards them to northeurope. Such a write is in northeurope and
	// never in westeurope's lost writes.
	old := keysWrittenBefore(ops, fencedAt)
	for _, op := range ops {
		if mine(op) && op.Outcome == history.OK && op.Kind.Write() && op.Call.After(fencedAt) && !old[op.Key] && inLostWrites(op, defaultInstance, lw) {
			t.Errorf("fenced westeurope accepted a write after the fence: %s", op)
		}
	}
	st, err := readState(ctx, rs.Region(ne), defaultInstance)
	if err != nil {
		t.Fatal(err)
	}
	afterFence := func(op Op) bool { return mine(op) && op.Call.After(fencedAt) }
	for _, op := range absent(ops, st, afterFence) {
		t.Errorf("write issued after the fence, acknowledged by westeurope, not in northeurope: %s", op)
	}
	// The divergent writes (acknowledged while cut off, before the fence)
	// are missing in northeurope, later than the reported window's start,
	// and in westeurope's lost-writes report.
	missing := absent(ops, st, func(op Op) bool { return mine(op) && !op.Call.After(fencedAt) })
	var outside, unreported int
	for _, op := range missing {
		if !op.Return.After(it.LastReplicatedTime) {
			outside++
			t.Errorf("SILENT LOSS: acknowledged before the reported last replicated time %s: %s", it.LastReplicatedTime.Format("15:04:05.000"), op)
		}
		if !inLostWrites(op, defaultInstance, lw) {
			unreported++
			t.Errorf("divergent write not in westeurope's lost-writes report: %s", op)
		}
	}
	if len(missing) == 0 {
		t.Errorf("no divergent write: westeurope accepted nothing while cut off (the scenario tests nothing)")
	}
	if ps, err := onePrimary(ctx, rs, rs.Names()); err != nil {
		t.Errorf("one primary per instance: %v", err)
	} else if got := ps[defaultInstance]; len(got) != 1 || got[0] != fmt.Sprintf("%s(primary,epoch %d)", ne, epoch+1) {
		t.Errorf("primary of %s: %v, want northeurope at epoch %d", defaultInstance, got, epoch+1)
	}
	sum.Ops, sum.Acked = countOK(ops, mine)
	sum.Missing, sum.Outside, sum.LostWrites = len(missing)-outside, outside, len(lw.Writes)
	sum.Notes = append(sum.Notes, fmt.Sprintf("cut %v before the fence; demoted %v after the mend; %d divergent writes, %d unreported",
		fencedAt.Sub(cutAt).Round(time.Millisecond), demotedAt.Sub(failedOverAt).Round(time.Millisecond), len(missing), unreported))
}
