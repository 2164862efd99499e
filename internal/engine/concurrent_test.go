package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// indeterminateAssignments makes every successful write of an assigned
// record report store.ErrIndeterminate, as a commit that timed out on a
// dead leader but was applied does.
func indeterminateAssignments(rec *model.Registration, err error) error {
	if err == nil && rec.Status == model.OpStatusAssigned {
		return fmt.Errorf("%w: %w: injected: commit timed out", store.ErrUnavailable, store.ErrIndeterminate)
	}
	return err
}

// A registration whose record write committed but was reported
// indeterminate must not then overwrite its own assigned record with a
// failure: it reads the record again, keeps it and answers assigned.
func TestIndeterminateWriteKeepsAssignedRecord(t *testing.T) {
	e := newEnv(t, Config{})
	en := e.enroll("indet-1", nil)
	e.e.afterWrite = indeterminateAssignments
	r, err := e.register("indet-1", en.Attestation.SymmetricKey.PrimaryKey)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.enr.GetRegistration(context.Background(), e.in.Name, "indet-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.OpStatusAssigned || rec.AssignedHub == "" {
		t.Fatalf("stored record = %s (error %d %q), want the assigned record kept", rec.Status, rec.ErrorCode, rec.ErrorMessage)
	}
	if r.Status.Status != model.OpStatusAssigned || r.Status.OperationID != rec.OperationID ||
		r.Status.RegistrationState.AssignedHub != rec.AssignedHub {
		t.Errorf("answer = %s op %s hub %s, want assigned op %s hub %s", r.Status.Status, r.Status.OperationID,
			r.Status.RegistrationState.AssignedHub, rec.OperationID, rec.AssignedHub)
	}
}

// jobFor builds the job of a registration of id, as Register does, without
// running it.
func (e *env) jobFor(id, key string, baseRev int64) *job {
	e.t.Helper()
	req := &Request{IDScope: e.in.IDScope, RegistrationID: id, SASToken: e.token(id, key)}
	snap, match, err := e.e.authenticate(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return &job{e: e.e, snap: snap, req: req, match: match, opID: newOperationID(), baseRev: baseRev, done: make(chan struct{})}
}

// A registration that fails after another registration of the same device
// succeeded (the two ran at once) keeps that assignment and answers it,
// rather than turning an acknowledged assignment into a failure. One that
// decided on the current record and failed records the failure.
func TestFailureKeepsConcurrentAssignment(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	en := e.enroll("conc-1", nil)
	key := en.Attestation.SymmetricKey.PrimaryKey
	older := e.jobFor("conc-1", key, 0) // started while the device had no record
	newer := e.mustAssigned("conc-1", key)

	rec, err := older.recordFailure(ctx, codeHubFailed, "IoT hub x: unavailable")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.OpStatusAssigned || rec.OperationID != newer.OperationID {
		t.Errorf("older failure returned %s op %s, want the newer assignment (op %s)", rec.Status, rec.OperationID, newer.OperationID)
	}
	stored, err := e.enr.GetRegistration(ctx, e.in.Name, "conc-1")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Status != model.OpStatusAssigned || stored.OperationID != newer.OperationID {
		t.Fatalf("stored record = %s op %s, want the newer assignment kept", stored.Status, stored.OperationID)
	}

	cur, err := e.e.readRegistration(ctx, e.in.Name, "conc-1", false)
	if err != nil {
		t.Fatal(err)
	}
	decided := e.jobFor("conc-1", key, cur.rev) // decided on the assigned record, then failed
	rec, err = decided.recordFailure(ctx, codeHubFailed, "IoT hub x: unavailable")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != model.OpStatusFailed || rec.OperationID != decided.opID || rec.Hub != stored.Hub {
		t.Errorf("failure on the current record = %s op %s hub %q, want failed op %s keeping hub %q",
			rec.Status, rec.OperationID, rec.Hub, decided.opID, stored.Hub)
	}
}

// An operation still "assigning" whose device registered again and
// finished meanwhile answers the newer outcome at once, not "assigning"
// until its marker's deadline.
func TestOlderOperationAnswersNewerOutcome(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{})
	en := e.enroll("dbl-1", nil)
	key := en.Attestation.SymmetricKey.PrimaryKey
	older := newOperationID()
	now := time.Now()
	if err := e.e.putMarker(ctx, e.in.Name, older, opMarker{RegistrationID: "dbl-1", Started: now, Deadline: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	newer := e.mustAssigned("dbl-1", key)

	req := &Request{IDScope: e.in.IDScope, RegistrationID: "dbl-1", SASToken: e.token("dbl-1", key)}
	p, err := e.e.OperationStatus(ctx, req, older)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Status != model.OpStatusAssigned || p.Status.OperationID != older ||
		p.Status.RegistrationState.AssignedHub != newer.RegistrationState.AssignedHub {
		t.Fatalf("older operation = %s op %s hub %q, want assigned op %s hub %q", p.Status.Status, p.Status.OperationID,
			p.Status.RegistrationState.AssignedHub, older, newer.RegistrationState.AssignedHub)
	}
	if p, err := e.e.OperationStatus(ctx, req, newer.OperationID); err != nil || p.Status.OperationID != newer.OperationID {
		t.Errorf("newer operation = %+v, %v", p, err)
	}
}

// A slow-path operation writes its outcome into its marker when it ends,
// so it is answered even when the record no longer names it.
func TestSlowPathMarkerKeepsOutcome(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Config{FastPath: -1})
	var r *Result
	var id, key string
	for i := range 10 {
		id = fmt.Sprintf("dev-out-%d", i)
		key = e.enroll(id, nil).Attestation.SymmetricKey.PrimaryKey
		var err error
		if r, err = e.register(id, key); err != nil {
			t.Fatal(err)
		}
		if r.Status.Status == model.OpStatusAssigning {
			break
		}
	}
	if r.Status.Status != model.OpStatusAssigning {
		t.Skip("no registration took the slow path")
	}
	op := r.Status.OperationID
	var m *opMarker
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if m, _, err = e.e.getMarker(ctx, e.in.Name, op); err != nil {
			t.Fatal(err)
		}
		if m != nil && m.Outcome != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker of %s = %+v: no outcome", op, m)
		}
	}
	if m.Outcome.Status != model.OpStatusAssigned || m.Outcome.OperationID != op {
		t.Fatalf("marker outcome = %s op %s", m.Outcome.Status, m.Outcome.OperationID)
	}
	if err := e.enr.DeleteRegistration(ctx, e.in.Name, id, ""); err != nil {
		t.Fatal(err)
	}
	req := &Request{IDScope: e.in.IDScope, RegistrationID: id, SASToken: e.token(id, key)}
	p, err := e.e.OperationStatus(ctx, req, op)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Status != model.OpStatusAssigned || p.Status.OperationID != op {
		t.Errorf("operation without its record = %s op %s, want its outcome", p.Status.Status, p.Status.OperationID)
	}
}
