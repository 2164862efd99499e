package engine

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/attest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Authenticate implements Device: the authentication step of Register,
// alone.
func (e *Engine) Authenticate(ctx context.Context, req *Request) error {
	_, _, err := e.authenticate(ctx, req)
	return err
}

// Register implements Device.
func (e *Engine) Register(ctx context.Context, req *Request) (*Result, error) {
	snap, match, err := e.authenticate(ctx, req)
	if err != nil {
		return nil, err
	}
	if ok, wait := e.throttle.AllowRegister(snap.name); !ok {
		return nil, throttled(wait)
	}
	opID := newOperationID()
	if match.Disabled {
		return e.disabled(opID, req, match), nil
	}
	job := &job{e: e, snap: snap, req: req, match: match, opID: opID, done: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		wctx, cancel := context.WithTimeout(e.ctx, e.cfg.WorkTimeout)
		defer cancel()
		job.run(wctx)
	}()
	if e.cfg.FastPath > 0 {
		t := time.NewTimer(e.cfg.FastPath)
		defer t.Stop()
		select {
		case <-job.done:
			return job.result(), nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return e.slow(ctx, job)
}

// slow answers "assigning" for a job still running, after recording a
// marker so that any node can answer the polls.
func (e *Engine) slow(ctx context.Context, j *job) (*Result, error) {
	now := time.Now()
	m := opMarker{RegistrationID: j.req.RegistrationID, Started: now, Deadline: now.Add(e.cfg.WorkTimeout)}
	if err := e.putMarker(ctx, j.snap.name, j.opID, m); err != nil {
		select {
		case <-j.done: // finished meanwhile: the record answers polls
			return j.result(), nil
		default:
		}
		return nil, unavailable(err)
	}
	if !j.markerWritten(m) { // finished while the marker was written (slow during a leader election): answer at once
		res := j.result()
		// The job did not see the marker, so record its outcome here, in
		// case the record ends up naming another operation (best effort:
		// the answer already carries the outcome).
		m.Outcome = res.Status
		if err := e.putMarker(ctx, j.snap.name, j.opID, m); err != nil {
			e.log.Debug("could not record the outcome of an operation", "operation_id", j.opID, "err", err)
		}
		return res, nil
	}
	return e.assigning(j.opID, j.req.RegistrationID), nil
}

func (e *Engine) assigning(opID, regID string) *Result {
	return &Result{RetryAfter: e.cfg.RetryAfter, Status: &model.RegistrationOperationStatus{
		OperationID: opID, Status: model.OpStatusAssigning,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: regID, Status: model.OpStatusAssigning},
	}}
}

func (e *Engine) disabled(opID string, req *Request, m *attest.Match) *Result {
	now := timestamp(time.Now())
	return &Result{Status: &model.RegistrationOperationStatus{
		OperationID: opID, Status: model.OpStatusDisabled,
		RegistrationState: &model.DeviceRegistrationResult{
			RegistrationID: req.RegistrationID, Status: model.OpStatusDisabled,
			ErrorMessage:           m.Err().Error(),
			LastUpdatedDateTimeUTC: now,
		},
	}}
}

// OperationStatus implements Device.
func (e *Engine) OperationStatus(ctx context.Context, req *Request, opID string) (*Result, error) {
	snap, match, err := e.authenticate(ctx, req)
	if err != nil {
		return nil, err
	}
	if ok, wait := e.throttle.AllowPoll(snap.name, req.RegistrationID); !ok {
		return nil, throttled(wait)
	}
	cur, err := e.readRegistration(ctx, snap.name, req.RegistrationID, false)
	if err != nil {
		return nil, err
	}
	reg := cur.reg
	if reg != nil && reg.OperationID == opID {
		return &Result{Status: statusOf(reg)}, nil
	}
	m, mrev, err := e.getMarker(ctx, snap.name, opID)
	if err != nil {
		return nil, unavailable(err)
	}
	if m == nil || !equalFold(m.RegistrationID, req.RegistrationID) {
		if match.Disabled {
			return e.disabled(opID, req, match), nil
		}
		return nil, apierr.New(apierr.CodeOperationNotFound, "Operation %s of registration %s was not found.", opID, req.RegistrationID)
	}
	if m.Outcome != nil { // finished, and the record names another operation since
		out := *m.Outcome
		out.OperationID = opID
		return &Result{Status: &out}, nil
	}
	if reg != nil && cur.rev > mrev && terminal(reg.Status) {
		// Another registration of the same device finished after this
		// operation was under way (the record changed after its marker was
		// written): that is the device's outcome now. Answering it at once
		// beats "assigning" until the marker's deadline; if this
		// operation's own work is still running, it decides again on that
		// record (process).
		return &Result{Status: statusFor(reg, opID)}, nil
	}
	if time.Now().After(m.Deadline) {
		return &Result{Status: failedStatus(opID, req.RegistrationID, apierr.CodeInternal, "The registration did not complete in time; register again.")}, nil
	}
	return e.assigning(opID, req.RegistrationID), nil
}

// RegistrationStatus implements Device.
func (e *Engine) RegistrationStatus(ctx context.Context, req *Request) (*model.DeviceRegistrationResult, error) {
	snap, _, err := e.authenticate(ctx, req)
	if err != nil {
		return nil, err
	}
	if ok, wait := e.throttle.AllowPoll(snap.name, req.RegistrationID); !ok {
		return nil, throttled(wait)
	}
	reg, err := e.registration(ctx, snap.name, req.RegistrationID)
	if err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, apierr.New(apierr.CodeRegistrationMissing, "Registration %s was not found.", req.RegistrationID)
	}
	return resultOf(reg), nil
}

// authenticate resolves the ID scope and attests the device.
func (e *Engine) authenticate(ctx context.Context, req *Request) (*snapshot, *attest.Match, error) {
	snap, err := e.snaps.resolve(ctx, req.IDScope)
	if errors.Is(err, errUnknownScope) {
		return nil, nil, apierr.New(apierr.CodeInstanceNotFound, "ID scope %s was not found.", req.IDScope)
	}
	if err != nil {
		return nil, nil, unavailable(err)
	}
	src := enrollments{st: e.store, snap: snap}
	var m *attest.Match
	switch {
	case req.SASToken != "":
		m, err = e.attestor.SymmetricKey(ctx, attest.SASRequest{Enrollments: src, IDScope: req.IDScope,
			RegistrationID: req.RegistrationID, Token: req.SASToken})
	case len(req.PeerCertificates) > 0:
		m, err = e.attestor.X509(ctx, attest.X509Request{Enrollments: src, RegistrationID: req.RegistrationID,
			Chain: req.PeerCertificates})
	default:
		return nil, nil, apierr.New(apierr.CodeUnauthorized, "The request carries no credential: send a SAS token in the Authorization header, or a client certificate.")
	}
	var ae *attest.Error
	switch {
	case errors.As(err, &ae):
		return nil, nil, &apierr.Error{Status: http.StatusUnauthorized, Code: ae.Code, Message: ae.Message, Cause: err}
	case err != nil:
		return nil, nil, unavailable(err)
	}
	return snap, m, nil
}

// readReg is a registration record as read before a decision.
type readReg struct {
	key string
	rev int64  // 0: absent
	raw []byte // nil: absent
	reg *model.Registration
}

// readRegistration reads the record with its mod revision. A decision
// reads it serializably (serializable: a stale read is caught by the
// revision comparison of the write, Tx.Seed); an answer that must see
// every committed write (a poll, recordFailure) reads it linearizably.
func (e *Engine) readRegistration(ctx context.Context, instance, regID string, serializable bool) (*readReg, error) {
	r := &readReg{key: store.Key(instance, store.KindRegistration, regID)}
	var reg model.Registration
	rev, raw, err := e.store.GetRev(ctx, r.key, &reg, serializable)
	if err != nil {
		return nil, unavailable(err)
	}
	if rev != 0 {
		r.rev, r.raw, r.reg = rev, raw, &reg
	}
	return r, nil
}

func terminal(status string) bool {
	return status == model.OpStatusAssigned || status == model.OpStatusFailed
}

func (e *Engine) registration(ctx context.Context, instance, regID string) (*model.Registration, error) {
	var r model.Registration
	ok, err := e.store.Get(ctx, store.Key(instance, store.KindRegistration, regID), &r)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, nil
	}
	return &r, nil
}

func throttled(wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	e := apierr.New(apierr.CodeThrottled, "Too many requests; retry after %d seconds.", secs)
	e.Header = http.Header{"Retry-After": []string{strconv.Itoa(secs)}}
	return e
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	e := apierr.Wrap(err, apierr.CodeUnavailable, "The service is temporarily unavailable; retry.")
	e.Header = http.Header{"Retry-After": []string{"1"}}
	return e
}
