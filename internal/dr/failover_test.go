package dr

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestFailoverPromotesAndFences: an unplanned failover fences the old
// primary over the peer link and promotes the secondary at epoch+1; writes
// then commit in the new primary only, also after the old one demoted.
func TestFailoverPromotesAndFences(t *testing.T) {
	const name = "alpha"
	wr, nr := createDR(t, name)
	ctx := ctxT(t)
	if _, err := write(ctx, wr, name, "before"); err != nil {
		t.Fatalf("write in the primary before the failover: %v", err)
	}
	wantRS := setRepl(t, nr, name, model.ReplStreaming, headRev(t, wr))
	m, _ := manager(t, nr)
	rep, err := m.Failover(ctx, FailoverRequest{From: we})
	if err != nil {
		t.Fatal(err)
	}
	it := itemOf(t, rep, name)
	if it.Status != model.FailoverPromoted || it.Epoch != 2 || it.From != we || it.To != ne || !it.OldPrimaryFenced {
		t.Errorf("item = %+v, want promoted at epoch 2 from %s, old primary fenced", it, we)
	}
	if it.LastReplicatedRev != wantRS.Rev || !it.LastReplicatedTime.Equal(wantRS.SourceTime) {
		t.Errorf("last replicated = %d %v, want %d %v", it.LastReplicatedRev, it.LastReplicatedTime, wantRS.Rev, wantRS.SourceTime)
	}
	d := dirOf(t, nr, name)
	if d.Primary != ne || d.Secondary != we || d.Epoch != 2 || d.Role != model.RolePrimary || d.FailedOverAt.IsZero() {
		t.Errorf("new primary's entry = %+v", d)
	}
	if old := dirOf(t, wr, name); old.Role != model.RoleFenced || old.Epoch != 1 {
		t.Errorf("old primary's entry = %+v, want fenced at epoch 1", old)
	}
	if _, err := write(ctx, nr, name, "after"); err != nil {
		t.Errorf("write in the new primary: %v", err)
	}
	_, err = write(ctx, wr, name, "stale")
	wantFenced(t, err, "write in the fenced old primary")

	// The old primary learns the new epoch and demotes itself.
	if err := m2(t, wr).Demote(ctx, name, *d, wantRS.Rev); err != nil {
		t.Fatal(err)
	}
	if old := dirOf(t, wr, name); old.Role != model.RoleSecondary || old.Epoch != 2 || old.Primary != ne {
		t.Errorf("demoted entry = %+v", old)
	}
	_, err = write(ctx, wr, name, "stale2")
	wantFenced(t, err, "write in the demoted old primary")
	if _, err := write(ctx, nr, name, "after2"); err != nil {
		t.Errorf("write in the new primary after the demotion: %v", err)
	}
	// A second failover of the same instance is idempotent.
	rep, err = m.Failover(ctx, FailoverRequest{Instances: []string{name}})
	if err != nil || itemOf(t, rep, name).Status != model.FailoverSkipped {
		t.Errorf("failover again: %+v %v, want skipped", rep, err)
	}
}

func m2(t *testing.T, r *testRegion) *Manager { m, _ := manager(t, r); return m }

// TestFailoverWithoutPeerLink: without a peer link the failover still
// promotes; the old primary is reported fenced only when the caller fenced
// it directly.
func TestFailoverWithoutPeerLink(t *testing.T) {
	ctx := ctxT(t)
	for _, direct := range []bool{false, true} {
		name := fmt.Sprintf("nopeer%t", direct)
		_, nr := createDR(t, name)
		m, _ := manager(t, nr, func(c *Config) { c.Peer = nil })
		rep, err := m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}, FencedDirectly: direct})
		if err != nil {
			t.Fatal(err)
		}
		if it := itemOf(t, rep, name); it.Status != model.FailoverPromoted || it.OldPrimaryFenced != direct {
			t.Errorf("fencedDirectly=%t: item = %+v", direct, it)
		}
	}
}

// createResidency creates instance name, primary in westeurope (region
// r), with data residency enabled: disaster recovery is disabled for it.
func createResidency(ctx context.Context, t *testing.T, r *testRegion, name string) {
	t.Helper()
	d := model.DirEntry{Name: name, IDScope: "0ne" + name, Primary: we, Epoch: 1, Role: model.RolePrimary}
	if err := r.st.CreateInstance(ctx, d, &model.Instance{Name: d.Name, IDScope: d.IDScope, EnableDataResidency: true}); err != nil {
		t.Fatal(err)
	}
}

// TestResidencyRefused: a DR-disabled instance can be neither fenced nor
// failed over.
func TestResidencyRefused(t *testing.T) {
	wr, _ := pair(t)
	ctx := ctxT(t)
	createResidency(ctx, t, wr, "canary")
	m, _ := manager(t, wr)
	const msg = "data residency: disaster recovery is disabled for this instance"
	_, err := m.Fence(ctx, FenceRequest{Instances: []string{"canary"}})
	if !errors.Is(err, ErrResidency) || !errors.Is(err, ErrRefused) || !contains(err.Error(), msg) {
		t.Errorf("fence: err = %v, want the residency refusal", err)
	}
	rep, err := m.Failover(ctx, FailoverRequest{Instances: []string{"canary"}, Force: true})
	if !errors.Is(err, ErrResidency) {
		t.Errorf("failover: err = %v, want the residency refusal", err)
	}
	if rep == nil || itemOf(t, rep, "canary").Status != model.FailoverRefused {
		t.Errorf("failover report = %+v", rep)
	}
	// Fencing every instance of the region leaves it alone.
	res, err := m.Fence(ctx, FenceRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range res.Items {
		if it.Instance == "canary" {
			t.Errorf("a fence of the region touched the residency instance: %+v", it)
		}
	}
	if d := dirOf(t, wr, "canary"); d.Role != model.RolePrimary {
		t.Errorf("residency instance is %s", d.Role)
	}
}

// TestResidencyRefusedByThePair: the pair region never holds a residency
// instance, yet refuses its failover with the residency reason (it asks the
// other regions), not with "does not exist".
func TestResidencyRefusedByThePair(t *testing.T) {
	wr, nr := pair(t)
	ctx := ctxT(t)
	createResidency(ctx, t, wr, "canary-pair")
	m, _ := manager(t, nr)
	rep, err := m.Failover(ctx, FailoverRequest{Instances: []string{"canary-pair"}, Force: true})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("failover at the pair: err = %v, want a refusal", err)
	}
	it := itemOf(t, rep, "canary-pair")
	if it.Status != model.FailoverRefused || !contains(it.Reason, "data residency") || !contains(it.Reason, we) {
		t.Errorf("item = %+v, want refused for data residency, kept in %s", it, we)
	}
	// An instance nobody has is still "does not exist".
	rep, _ = m.Failover(ctx, FailoverRequest{Instances: []string{"nowhere"}, Force: true})
	if it := itemOf(t, rep, "nowhere"); !contains(it.Reason, "does not exist") {
		t.Errorf("unknown instance: %+v", it)
	}
}

// TestFailoverCooldown: a failback within the cool-down is refused unless
// forced.
func TestFailoverCooldown(t *testing.T) {
	const name = "bravo"
	wr, nr := createDR(t, name)
	ctx := ctxT(t)
	if _, err := m2(t, nr).Failover(ctx, FailoverRequest{From: we, Instances: []string{name}}); err != nil {
		t.Fatal(err)
	}
	newDir := dirOf(t, nr, name)
	if err := m2(t, wr).Demote(ctx, name, *newDir, 0); err != nil {
		t.Fatal(err)
	}
	// westeurope is now the secondary, fed by northeurope.
	setRepl(t, wr, name, model.ReplStreaming, headRev(t, nr))
	clock := newDir.FailedOverAt.Add(time.Minute)
	m, _ := manager(t, wr, func(c *Config) { c.Cooldown = 5 * time.Minute; c.Now = func() time.Time { return clock } })
	rep, err := m.Failover(ctx, FailoverRequest{From: ne, Instances: []string{name}})
	if !errors.Is(err, ErrRefused) || !contains(itemOf(t, rep, name).Reason, "cool-down") {
		t.Fatalf("failback within the cool-down: %+v %v, want refused", rep, err)
	}
	if d := dirOf(t, wr, name); d.Role != model.RoleSecondary {
		t.Errorf("refused failback changed the entry: %+v", d)
	}
	rep, err = m.Failover(ctx, FailoverRequest{From: ne, Instances: []string{name}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if it := itemOf(t, rep, name); it.Status != model.FailoverPromoted || it.Epoch != 3 {
		t.Errorf("forced failback: %+v", it)
	}
	if d := dirOf(t, wr, name); d.Primary != we || d.Epoch != 3 || d.Role != model.RolePrimary {
		t.Errorf("entry after failback: %+v", d)
	}
}

// TestFailoverRefusesIncompleteCopy: a copy in its base copy, or never
// replicated, is refused unless forced.
func TestFailoverRefusesIncompleteCopy(t *testing.T) {
	ctx := ctxT(t)
	const name = "charlie"
	_, nr := createDR(t, name)
	setRepl(t, nr, name, model.ReplCopying, 5)
	m, _ := manager(t, nr)
	rep, err := m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}})
	if !errors.Is(err, ErrRefused) || !contains(itemOf(t, rep, name).Reason, "base copy") {
		t.Errorf("copying: %+v %v, want refused", rep, err)
	}
	if _, err := nr.st.Client().Delete(ctx, store.ReplStateKey(name)); err != nil {
		t.Fatal(err)
	}
	rep, err = m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}})
	if !errors.Is(err, ErrRefused) || !contains(itemOf(t, rep, name).Reason, "nothing was replicated") {
		t.Errorf("never replicated: %+v %v, want refused", rep, err)
	}
	setRepl(t, nr, name, model.ReplCopying, 5)
	rep, err = m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}, Force: true})
	if err != nil || itemOf(t, rep, name).Status != model.FailoverPromoted {
		t.Errorf("forced: %+v %v, want promoted", rep, err)
	}
}

// TestPlannedFailoverWaitsForDrain: a planned failover fences the primary
// and promotes only once the ReplState reached the fence.
func TestPlannedFailoverWaitsForDrain(t *testing.T) {
	const name = "delta"
	wr, nr := createDR(t, name)
	ctx := ctxT(t)
	lastRev, err := write(ctx, wr, name, "last")
	if err != nil {
		t.Fatal(err)
	}
	behind := setRepl(t, nr, name, model.ReplStreaming, lastRev-1)
	var caughtUp int64
	done := make(chan struct{})
	go func() { // the replicator (streaming the prefix only): catches up a little after the fence
		defer close(done)
		for ctx.Err() == nil {
			resp, err := wr.st.Client().Get(ctx, store.DirKey(name))
			if err == nil && len(resp.Kvs) == 1 && contains(string(resp.Kvs[0].Value), `"role":"fenced"`) {
				time.Sleep(100 * time.Millisecond)
				caughtUp = lastRev
				setRepl(t, nr, name, model.ReplStreaming, caughtUp)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	m, _ := manager(t, nr)
	rep, err := m.Failover(ctx, FailoverRequest{Instances: []string{name}, Planned: true})
	<-done
	if err != nil {
		t.Fatal(err)
	}
	it := itemOf(t, rep, name)
	if it.Status != model.FailoverPromoted || !it.OldPrimaryFenced || it.LastReplicatedRev != caughtUp || caughtUp <= behind.Rev {
		t.Errorf("item = %+v, want promoted with last replicated rev %d (the last write)", it, caughtUp)
	}
	_, err = write(ctx, wr, name, "late")
	wantFenced(t, err, "write in the old primary after a planned failover")
}

// TestPlannedFailoverRefusedWithoutDrain: replication that does not catch
// up refuses the failover and lifts the fence.
func TestPlannedFailoverRefusedWithoutDrain(t *testing.T) {
	const name = "echo"
	wr, nr := createDR(t, name)
	ctx := ctxT(t)
	setRepl(t, nr, name, model.ReplStreaming, 1)
	m, _ := manager(t, nr, func(c *Config) { c.DrainTimeout = 300 * time.Millisecond })
	rep, err := m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}, Planned: true})
	if !errors.Is(err, ErrRefused) || !contains(itemOf(t, rep, name).Reason, "did not catch up") {
		t.Fatalf("planned failover without drain: %+v %v, want refused", rep, err)
	}
	if d := dirOf(t, nr, name); d.Role != model.RoleSecondary || d.Epoch != 1 {
		t.Errorf("secondary entry changed: %+v", d)
	}
	if d := dirOf(t, wr, name); d.Role != model.RolePrimary {
		t.Errorf("primary entry after the refused planned failover: %+v, want unfenced", d)
	}
	if _, err := write(ctx, wr, name, "still-writable"); err != nil {
		t.Errorf("write in the primary after a refused planned failover: %v", err)
	}
	// Without a peer link a planned failover cannot fence: refused.
	m, _ = manager(t, nr, func(c *Config) { c.Peer = nil })
	if _, err := m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}, Planned: true}); !errors.Is(err, ErrRefused) {
		t.Errorf("planned failover without peer link: %v, want refused", err)
	}
}

// TestFailoverDoesNotScanRecords: the failover of an instance with 10,000
// records reads what one with 1,000 reads, and never an instance prefix.
// It prints both durations (no assertion on time).
func TestFailoverDoesNotScanRecords(t *testing.T) {
	_, nr := pair(t)
	ctx := ctxT(t)
	reads := map[int]int{}
	for _, n := range []int{1000, 10000} {
		name := fmt.Sprintf("records%d", n)
		d := model.DirEntry{Name: name, IDScope: "0ne" + name, Primary: we, Secondary: ne, Epoch: 1, DREnabled: true, Role: model.RoleSecondary}
		if err := nr.st.CreateInstance(ctx, d, &model.Instance{Name: name, IDScope: d.IDScope}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 1000 { // replicated registrations, 1,000 per transaction
			ops := make([]clientv3.Op, 0, 1000)
			for j := i; j < i+1000; j++ {
				id := fmt.Sprintf("device-%06d", j)
				ops = append(ops, clientv3.OpPut(store.Key(name, store.KindRegistration, id), `{"registrationId":"`+id+`","status":"assigned"}`))
			}
			if _, err := nr.st.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
		}
		setRepl(t, nr, name, model.ReplStreaming, 100)
		m, ckv := manager(t, nr, func(c *Config) { c.Peer = nil })
		start := time.Now()
		rep, err := m.Failover(ctx, FailoverRequest{From: we, Instances: []string{name}, FencedDirectly: true})
		took := time.Since(start)
		if err != nil || itemOf(t, rep, name).Status != model.FailoverPromoted {
			t.Fatalf("%d records: %+v %v", n, rep, err)
		}
		if ckv.scanned(store.InstancePrefix(name)) {
			t.Errorf("%d records: the failover read the instance prefix: %v", n, ckv.ranges)
		}
		reads[n] = ckv.reads
		t.Logf("failover of an instance with %5d records: %v, %d reads", n, took, ckv.reads)
	}
	if reads[1000] != reads[10000] {
		t.Errorf("reads: %d with 1,000 records, %d with 10,000", reads[1000], reads[10000])
	}
	// A region failover lists directory entries, never instance records.
	m, ckv := manager(t, nr, func(c *Config) { c.Peer = nil })
	if _, err := m.Failover(ctx, FailoverRequest{From: "nowhere"}); err != nil {
		t.Fatal(err)
	}
	if ckv.scanned(store.InstancePrefix("records10000")) || len(ckv.ranges) == 0 {
		t.Errorf("region failover ranges: %v", ckv.ranges)
	}
}

// TestFailoverRequestChecks: requests without a source, or from here.
func TestFailoverRequestChecks(t *testing.T) {
	_, nr := pair(t)
	m, _ := manager(t, nr)
	for _, req := range []FailoverRequest{{}, {From: ne}} {
		if _, err := m.Failover(context.Background(), req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", req, err)
		}
	}
}
