package dr

import (
	"context"
	"errors"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// newEpoch is the entry a new primary (northeurope) has after a failover.
func newEpoch(name string) model.DirEntry {
	return model.DirEntry{Name: name, IDScope: "0ne" + name, Primary: ne, Secondary: we, Epoch: 2, DREnabled: true, Role: model.RolePrimary}
}

// writeAroundAck writes the enrollments ids of instance name in region r,
// takes the head revision as the one the new primary acknowledged, then
// writes enrollment after and deletes enrollment deleted: the writes a
// failover loses. It returns the acknowledged revision and the write's.
func writeAroundAck(ctx context.Context, t *testing.T, r *testRegion, name string, ids []string, after, deleted string) (acked, afterRev int64) {
	t.Helper()
	for _, id := range ids {
		if _, err := write(ctx, r, name, id); err != nil {
			t.Fatal(err)
		}
	}
	acked = headRev(t, r)
	afterRev, err := write(ctx, r, name, after)
	if err != nil {
		t.Fatal(err)
	}
	if err := remove(ctx, r, name, deleted); err != nil {
		t.Fatal(err)
	}
	return acked, afterRev
}

// demoteReport demotes instance name to newEpoch's secondary at acked and
// returns the one lost-writes report m then keeps of it.
func demoteReport(ctx context.Context, t *testing.T, m *Manager, name string, acked int64) model.LostWrites {
	t.Helper()
	if err := m.Demote(ctx, name, newEpoch(name), acked); err != nil {
		t.Fatal(err)
	}
	reps, err := m.LostWrites(ctx, name)
	if err != nil || len(reps) != 1 {
		t.Fatalf("reports = %+v, %v; want one", reps, err)
	}
	return reps[0]
}

// TestDemoteReportsWritesAfterAckedRev: the report lists exactly the puts
// and deletes after the acknowledged revision, not the fence; a second
// Demote changes nothing.
func TestDemoteReportsWritesAfterAckedRev(t *testing.T) {
	const name = "foxtrot"
	wr, _ := createDR(t, name)
	ctx := ctxT(t)
	acked, revC := writeAroundAck(ctx, t, wr, name, []string{"a", "b"}, "c", "a")
	revB, err := write(ctx, wr, name, "b")
	if err != nil {
		t.Fatal(err)
	}
	m := m2(t, wr)
	r := demoteReport(ctx, t, m, name, acked)
	if r.Instance != name || r.Region != we || r.OldEpoch != 1 || r.NewEpoch != 2 || r.NewPrimary != ne || r.AckedRev != acked || !r.Complete {
		t.Errorf("report = %+v", r)
	}
	key := func(id string) string { return store.Key(name, store.KindEnrollment, id) }
	want := []model.LostWrite{{Key: key("c"), Rev: revC}, {Key: key("a"), Deleted: true}, {Key: key("b"), Rev: revB}}
	if len(r.Writes) != len(want) {
		t.Fatalf("writes = %+v, want %d", r.Writes, len(want))
	}
	for i, w := range want {
		got := r.Writes[i]
		if got.Key != w.Key || got.Deleted != w.Deleted || (w.Rev != 0 && got.Rev != w.Rev) || got.Rev <= acked {
			t.Errorf("write %d = %+v, want %+v after %d", i, got, w, acked)
		}
		if !w.Deleted && !contains(got.Value, `"registrationId":"`) {
			t.Errorf("write %d value = %q", i, got.Value)
		}
	}
	if r.Writes[1].Rev <= revC || r.Writes[1].Rev >= revB {
		t.Errorf("delete at rev %d, want between %d and %d", r.Writes[1].Rev, revC, revB)
	}
	if d := dirOf(t, wr, name); d.Role != model.RoleSecondary || d.Epoch != 2 || d.Primary != ne || d.Secondary != we {
		t.Errorf("entry after demotion = %+v", d)
	}
	// Idempotent: the same demotion again keeps the first report.
	if err := m.Demote(ctx, name, newEpoch(name), acked); err != nil {
		t.Fatal(err)
	}
	again, _ := m.LostWrites(ctx, name)
	if len(again) != 1 || !again[0].DetectedAt.Equal(r.DetectedAt) {
		t.Errorf("reports after a second Demote = %+v", again)
	}
	// An older epoch is refused.
	old := newEpoch(name)
	old.Epoch = 1
	if err := m.Demote(ctx, name, old, acked); !errors.Is(err, ErrRefused) {
		t.Errorf("demote to an older epoch: %v, want refused", err)
	}
	all, _ := m.LostWrites(ctx, "")
	found := false
	for _, a := range all {
		found = found || a.Instance == name
	}
	if !found {
		t.Errorf("the listing of every report lacks %s", name)
	}
	if err := m.DeleteLostWrites(ctx, name, 2); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteLostWrites(ctx, name, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
}

// TestDemoteWithoutLostWrites: a demotion at the last revision stores an
// empty, complete report (the operator sees that it happened).
func TestDemoteWithoutLostWrites(t *testing.T) {
	const name = "golf"
	wr, _ := createDR(t, name)
	ctx := ctxT(t)
	m := m2(t, wr)
	if err := m.Demote(ctx, name, newEpoch(name), headRev(t, wr)); err != nil {
		t.Fatal(err)
	}
	reps, err := m.LostWrites(ctx, name)
	if err != nil || len(reps) != 1 || len(reps[0].Writes) != 0 || !reps[0].Complete {
		t.Errorf("reports = %+v, %v; want one empty complete report", reps, err)
	}
}

// TestDemoteCompactedHistory: when the history after the acknowledged
// revision was compacted the report lists the keys still present with a
// newer revision, and says it is incomplete.
func TestDemoteCompactedHistory(t *testing.T) {
	const name = "hotel"
	wr, _ := createDR(t, name)
	ctx := ctxT(t)
	acked, revNew := writeAroundAck(ctx, t, wr, name, []string{"gone", "kept"}, "new", "gone")
	if _, err := wr.st.Client().Compact(ctx, headRev(t, wr)); err != nil {
		t.Fatal(err)
	}
	r := demoteReport(ctx, t, m2(t, wr), name, acked)
	if r.Complete || len(r.Writes) != 1 || r.Writes[0].Key != store.Key(name, store.KindEnrollment, "new") || r.Writes[0].Rev != revNew {
		t.Errorf("report = %+v, want only the key written after %d, incomplete", r, acked)
	}
}
