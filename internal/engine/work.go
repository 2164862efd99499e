package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/opendps/opendps/internal/allocate"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/attest"
	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/internal/store"
)

// Error codes of failed registrations (registrationState.errorCode).
const (
	codeHubUnauthorized = 400209 // the linked hub refused our credentials
	codeHubFailed       = 500001 // the hub failed while assigning the device
)

// job is one registration attempt running in the background; done is
// closed when res is set.
type job struct {
	e     *Engine
	snap  *snapshot
	req   *Request
	match *attest.Match
	opID  string

	// baseRev is the mod revision of the registration record when the job
	// first read it (0: absent; -1: not read): a record at another
	// revision was written since the job started.
	baseRev int64

	done chan struct{}

	mu       sync.Mutex
	res      *Result   // guarded by mu; set before done is closed
	finished bool      // guarded by mu
	marker   *opMarker // guarded by mu: the operation marker, once written
}

func (j *job) result() *Result {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.res
}

// markerWritten notes that the operation marker m was written, so that the
// outcome is added to it when the job ends. It reports false when the job
// has already ended: its result is then the answer.
func (j *job) markerWritten(m opMarker) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.finished {
		return false
	}
	j.marker = &m
	return true
}

// finish sets the result, wakes the register call, and writes the outcome
// into the operation marker if there is one: the registration record may
// name another operation (the same device registering again at once), and
// then only the marker answers this operation's polls.
func (j *job) finish(res *Result) {
	j.mu.Lock()
	j.res, j.finished = res, true
	m := j.marker
	j.mu.Unlock()
	close(j.done)
	if m == nil {
		return
	}
	m.Outcome = res.Status
	ctx, cancel := context.WithTimeout(j.e.ctx, j.e.cfg.StoreTimeout)
	defer cancel()
	if err := j.e.putMarker(ctx, j.snap.name, j.opID, *m); err != nil {
		j.e.log.Warn("could not record the outcome of an operation", "instance", j.snap.name,
			"registration_id", j.req.RegistrationID, "operation_id", j.opID, "err", err)
	}
}

// run does the work and records the outcome, successful or failed.
func (j *job) run(ctx context.Context) {
	j.baseRev = -1
	reg, err := j.process(ctx)
	if err == nil {
		j.finish(&Result{Status: statusOf(reg)})
		return
	}
	code, msg := failure(err)
	j.e.log.Info("registration failed", "instance", j.snap.name, "registration_id", j.req.RegistrationID, "code", code, "err", err)
	fctx := ctx
	if ctx.Err() != nil { // the work timed out: still look for a write that committed
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(j.e.ctx, j.e.cfg.StoreTimeout)
		defer cancel()
	}
	if rec, werr := j.recordFailure(fctx, code, msg); werr == nil {
		j.finish(&Result{Status: statusFor(rec, j.opID)})
		return
	}
	j.finish(&Result{Status: failedStatus(j.opID, j.req.RegistrationID, code, msg)})
}

// process allocates a hub, applies the reprovisioning decision in the
// hubs and writes the registration record.
func (j *job) process(ctx context.Context) (*model.Registration, error) {
	for range maxRecordAttempts {
		cur, err := j.e.readRegistration(ctx, j.snap.name, j.req.RegistrationID, true)
		if err != nil {
			return nil, err
		}
		if j.baseRev < 0 {
			j.baseRev = cur.rev
		}
		rec, err := j.assign(ctx, cur.reg)
		if err != nil {
			return nil, err
		}
		out, err := j.write(ctx, cur, rec)
		if !errors.Is(err, errStale) {
			return out, err
		}
		// The record changed since it was read (the same device registering
		// twice at once): decide again on the new one.
	}
	return nil, store.ErrConflict
}

// maxRecordAttempts bounds the re-decisions of process.
const maxRecordAttempts = 4

var errStale = errors.New("engine: registration record changed during the registration")

// assign allocates a hub and applies the decision in the hubs. A hub found
// unavailable while assigning is excluded and the device allocated again
// (DPS keeps assigning to a dead hub; we do not).
func (j *job) assign(ctx context.Context, cur *model.Registration) (*model.Registration, error) {
	excluded := map[string]bool{}
	for {
		rec, host, err := j.attempt(ctx, cur, excluded)
		if err == nil {
			return rec, nil
		}
		if host == "" || !isUnavailable(err) || excluded[strings.ToLower(host)] || len(excluded) >= len(j.snap.hubs) {
			return nil, err
		}
		excluded[strings.ToLower(host)] = true
	}
}

// write stores rec in one fenced transaction that commits only if the
// registration record is still the one the decision was taken on.
func (j *job) write(ctx context.Context, cur *readReg, rec *model.Registration) (*model.Registration, error) {
	var out *model.Registration
	first := true
	err := j.e.store.UpdateIdempotent(ctx, j.snap.name, func(tx *store.Tx) error { // re-decides on the record: safe to repeat (store/retry.go)
		if !first {
			return errStale
		}
		first = false
		tx.Seed(cur.key, cur.rev, cur.raw)
		var err error
		out, err = j.e.enr.PutRegistrationTx(tx, j.snap.name, rec)
		return err
	})
	if h := j.e.afterWrite; h != nil {
		err = h(rec, err)
	}
	return out, err
}

// attempt allocates a hub (avoiding excluded ones) and applies the
// decision in the hubs. On failure it also returns the hub that failed.
func (j *job) attempt(ctx context.Context, cur *model.Registration, excluded map[string]bool) (*model.Registration, string, error) {
	a := *j.e.alloc
	a.Health = allocate.HealthFunc(func(h string) bool { return !excluded[strings.ToLower(h)] && j.e.hubs.Healthy(h) })
	alloc, err := a.Allocate(ctx, j.allocRequest(cur))
	if err != nil && !j.neverMoves(cur) {
		return nil, "", err
	}
	ec := j.match.Enrollment().Common()
	d, err := allocate.Decide(assignmentOf(cur), alloc.Hub, j.deviceID(), ec.ReprovisionPolicy)
	if err != nil {
		return nil, "", err
	}
	fp := j.fingerprint(alloc.InitialTwin)
	if err := j.applyInHub(ctx, cur, d, alloc, fp); err != nil {
		return nil, d.Hub, err
	}
	return j.record(cur, d, alloc, fp), "", nil
}

// neverMoves reports whether the device stays where it is whatever
// allocation says (reprovisionPolicy.updateHubAssignment false), so an
// allocation failure does not matter.
func (j *job) neverMoves(cur *model.Registration) bool {
	p := j.match.Enrollment().Common().ReprovisionPolicy
	return cur != nil && cur.Hub != "" && p != nil && !p.UpdateHubAssignment
}

func (j *job) allocRequest(cur *model.Registration) allocate.Request {
	r := allocate.Request{
		RegistrationID: j.req.RegistrationID, Individual: j.match.Individual, Group: j.match.Group,
		LinkedHubs: j.snap.hubs, DefaultPolicy: j.snap.instance.AllocationPolicy,
		ServingRegion: j.e.cfg.Region, Current: assignmentOf(cur), Payload: j.req.Payload(),
		Device: allocate.Device{AttestationType: j.match.AttestationType,
			Certificate: j.match.Certificate, SigningCertificate: j.match.SigningCertificate},
	}
	if j.match.Group != nil && j.match.Individual != nil {
		r.Individual = nil // a group device: the group's settings apply
	}
	return r
}

func assignmentOf(cur *model.Registration) *allocate.Assignment {
	if cur == nil || cur.Hub == "" {
		return nil
	}
	return &allocate.Assignment{Hub: cur.Hub, DeviceID: cur.HubDeviceID, Substatus: cur.Substatus, InitialHub: cur.InitialHub}
}

// deviceID is the hub device id the enrollment gives the device.
func (j *job) deviceID() string {
	if in := j.match.Individual; in != nil && j.match.Group == nil && in.DeviceID != "" {
		return in.DeviceID
	}
	return j.req.RegistrationID
}

// applyInHub makes the hubs match decision d.
func (j *job) applyInHub(ctx context.Context, cur *model.Registration, d allocate.Decision, alloc allocate.Result, fp string) error {
	switch d.Action {
	case allocate.ActionStay:
		return nil
	case allocate.ActionKeep:
		if cur != nil && cur.Fingerprint == fp && cur.Status == model.OpStatusAssigned {
			return nil // an idempotent repeat: nothing to change in the hub
		}
		return j.putIdentity(ctx, d.Hub, d.DeviceID)
	case allocate.ActionMigrate:
		return j.migrate(ctx, d)
	case allocate.ActionAssign, allocate.ActionReset:
		if err := j.putIdentity(ctx, d.Hub, d.DeviceID); err != nil {
			return err
		}
		if err := j.putInitialTwin(ctx, d.Hub, d.DeviceID, alloc.InitialTwin, d.Action == allocate.ActionReset); err != nil {
			return err
		}
		return j.removeOld(ctx, d)
	}
	return fmt.Errorf("engine: unknown action %v", d.Action)
}

func (j *job) migrate(ctx context.Context, d allocate.Decision) error {
	old, err := j.hubClient(d.MigrateFrom)
	if err != nil {
		return err
	}
	twin, err := old.GetTwin(ctx, d.DeviceID)
	j.e.hubs.report(d.MigrateFrom, err)
	if err != nil && !errors.Is(err, hub.ErrNotFound) {
		return hubErr(d.MigrateFrom, err)
	}
	if err := j.putIdentity(ctx, d.Hub, d.DeviceID); err != nil {
		return err
	}
	if twin.Tags != nil || len(twin.Properties.Desired) > 0 {
		c, err := j.hubClient(d.Hub)
		if err != nil {
			return err
		}
		patch := hub.Twin{Tags: twin.Tags, Properties: hub.TwinProperties{Desired: stripMeta(twin.Properties.Desired)}}
		_, err = c.UpdateTwin(ctx, d.DeviceID, patch)
		j.e.hubs.report(d.Hub, err)
		if err != nil {
			return hubErr(d.Hub, err)
		}
	}
	return j.removeOld(ctx, d)
}

// removeOld deletes the identity from the hub the device left. A failure
// is logged, not fatal: the device is already assigned to its new hub.
func (j *job) removeOld(ctx context.Context, d allocate.Decision) error {
	if d.RemoveFrom == "" || strings.EqualFold(d.RemoveFrom, d.Hub) {
		return nil
	}
	c, err := j.hubClient(d.RemoveFrom)
	if err == nil {
		err = c.DeleteDevice(ctx, d.DeviceID)
		j.e.hubs.report(d.RemoveFrom, err)
	}
	if err != nil && !errors.Is(err, hub.ErrNotFound) {
		j.e.log.Warn("could not remove device from its previous hub", "hub", d.RemoveFrom, "device_id", d.DeviceID, "err", err)
	}
	return nil
}

// hubClient returns the client of linked hub host.
func (j *job) hubClient(host string) (*hub.Client, error) {
	for _, h := range j.snap.hubs {
		if strings.EqualFold(h.Name, host) {
			return j.e.hubs.client(h.ConnectionString)
		}
	}
	return nil, &allocate.Error{Code: allocate.CodeNoHub, Message: fmt.Sprintf("IoT hub %s is not linked to this instance.", host)}
}

// putIdentity creates or updates the device identity in host.
func (j *job) putIdentity(ctx context.Context, host, deviceID string) error {
	c, err := j.hubClient(host)
	if err != nil {
		return err
	}
	dev := hub.Device{DeviceID: deviceID, Status: hub.StatusEnabled, Auth: j.hubAuth(),
		Capabilities: &hub.Capabilities{IoTEdge: j.edge()}}
	_, err = c.CreateOrUpdateDevice(ctx, dev)
	j.e.hubs.report(host, err)
	if err != nil {
		return hubErr(host, err)
	}
	return nil
}

// putInitialTwin writes the initial twin: the webhook's when it gave one,
// else the enrollment's. On a reset the desired properties and tags are
// replaced; on a first assignment they are patched in.
func (j *job) putInitialTwin(ctx context.Context, host, deviceID string, fromWebhook *model.InitialTwin, reset bool) error {
	it := fromWebhook
	if it == nil {
		it = j.match.Enrollment().Common().InitialTwin
	}
	if it == nil && !reset {
		return nil
	}
	c, err := j.hubClient(host)
	if err != nil {
		return err
	}
	t := twinOf(it)
	if reset {
		_, err = c.ReplaceTwin(ctx, deviceID, t)
	} else {
		_, err = c.UpdateTwin(ctx, deviceID, t)
	}
	j.e.hubs.report(host, err)
	if err != nil {
		return hubErr(host, err)
	}
	return nil
}

func twinOf(it *model.InitialTwin) hub.Twin {
	t := hub.Twin{Tags: map[string]any{}, Properties: hub.TwinProperties{Desired: map[string]any{}}}
	if it == nil {
		return t
	}
	if len(it.Tags) > 0 {
		json.Unmarshal(it.Tags, &t.Tags)
	}
	if it.Properties != nil && len(it.Properties.Desired) > 0 {
		json.Unmarshal(it.Properties.Desired, &t.Properties.Desired)
	}
	t.Properties.Desired = stripMeta(t.Properties.Desired)
	delete(t.Tags, "$metadata")
	delete(t.Tags, "$version")
	return t
}

// stripMeta removes the read-only $metadata/$version of a twin collection.
func stripMeta(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !strings.HasPrefix(k, "$") {
			out[k] = v
		}
	}
	return out
}

func (j *job) edge() bool {
	c := j.match.Enrollment().Common().Capabilities
	return c != nil && c.IoTEdge
}

// hubAuth is the authentication the device uses with its hub: the keys it
// registered with, its certificate thumbprints, or the CA of its group.
func (j *job) hubAuth() *hub.Authentication {
	m := j.match
	if m.AttestationType == model.AttestationX509 {
		if m.Group != nil {
			return &hub.Authentication{Type: hub.AuthCA}
		}
		tp := &hub.X509Thumbprint{PrimaryThumbprint: pki.SHA1Thumbprint(m.Certificate)}
		if cc := m.Individual.Attestation.X509.ClientCertificates; cc != nil {
			tp = thumbprints(cc, tp)
		}
		return &hub.Authentication{Type: hub.AuthSelfSigned, X509Thumbprint: tp}
	}
	var keys model.SymmetricKeyAttestation
	if m.Group != nil {
		g := m.Group.Attestation.SymmetricKey
		keys.PrimaryKey, _ = sas.DeriveKey(g.PrimaryKey, j.req.RegistrationID)
		keys.SecondaryKey, _ = sas.DeriveKey(g.SecondaryKey, j.req.RegistrationID)
	} else if sk := m.Individual.Attestation.SymmetricKey; sk != nil {
		keys = *sk
	}
	return &hub.Authentication{Type: hub.AuthSAS, SymmetricKey: &hub.SymmetricKey{PrimaryKey: keys.PrimaryKey, SecondaryKey: keys.SecondaryKey}}
}

func thumbprints(cc *model.X509Certificates, def *hub.X509Thumbprint) *hub.X509Thumbprint {
	tp := func(c *model.X509CertificateWithInfo) string {
		if c == nil {
			return ""
		}
		if c.Info != nil && c.Info.SHA1Thumbprint != "" {
			return c.Info.SHA1Thumbprint
		}
		if cert, err := pki.ParseCertificate([]byte(c.Certificate)); err == nil {
			return pki.SHA1Thumbprint(cert)
		}
		return ""
	}
	out := &hub.X509Thumbprint{PrimaryThumbprint: tp(cc.Primary), SecondaryThumbprint: tp(cc.Secondary)}
	if out.PrimaryThumbprint == "" {
		return def
	}
	return out
}

// fingerprint summarises what the hub is told about the device, so that a
// repeated registration with nothing changed skips the hub.
func (j *job) fingerprint(webhookTwin *model.InitialTwin) string {
	b, _ := json.Marshal(struct {
		Auth *hub.Authentication
		Edge bool
		Twin *model.InitialTwin
		WT   *model.InitialTwin
	}{j.hubAuth(), j.edge(), j.match.Enrollment().Common().InitialTwin, webhookTwin})
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

// record builds the registration record of a successful registration.
func (j *job) record(cur *model.Registration, d allocate.Decision, alloc allocate.Result, fp string) *model.Registration {
	r := &model.Registration{
		DeviceRegistrationState: model.DeviceRegistrationState{
			RegistrationID: j.req.RegistrationID, AssignedHub: d.Hub, DeviceID: d.DeviceID,
			Status: model.OpStatusAssigned, Substatus: d.Substatus, Payload: alloc.Payload,
		},
		EnrollmentGroupID: j.match.EnrollmentGroupID(), OperationID: j.opID,
		AttestationType: j.match.AttestationType, Hub: d.Hub, HubDeviceID: d.DeviceID,
		InitialHub: d.Hub, Fingerprint: fp, X509: j.x509Result(),
	}
	if cur != nil {
		if cur.InitialHub != "" {
			r.InitialHub = cur.InitialHub
		}
		if d.Action == allocate.ActionStay || d.Action == allocate.ActionKeep {
			if alloc.Payload == nil {
				r.Payload = cur.Payload
			}
			if d.Action == allocate.ActionStay {
				r.Fingerprint = cur.Fingerprint
			}
		}
	}
	return r
}

func (j *job) x509Result() *model.X509Result {
	m := j.match
	if m.AttestationType != model.AttestationX509 || m.Certificate == nil {
		return nil
	}
	info := certInfo(m.Certificate)
	x := &model.X509Result{CertificateInfo: &info, EnrollmentGroupID: m.EnrollmentGroupID()}
	if m.SigningCertificate != nil {
		si := certInfo(m.SigningCertificate)
		x.SigningCertificateInfo = &si
	}
	return x
}

// recordFailure writes a failed registration record, keeping where the
// identity currently is so the next attempt knows.
//
// It never replaces an assigned record written since the job started
// (baseRev): that is either the job's own write, which may have committed
// although the store called it indeterminate (store.ErrIndeterminate), or
// a concurrent registration of the same device that succeeded. It reads
// the record linearizably, so such a write is seen, keeps it and returns
// it as the outcome. The failure itself commits only if the record is
// still the one read (Tx.Seed), so an assignment that lands meanwhile is
// not overwritten either.
func (j *job) recordFailure(ctx context.Context, code int, msg string) (*model.Registration, error) {
	for range maxRecordAttempts {
		cur, err := j.e.readRegistration(ctx, j.snap.name, j.req.RegistrationID, false)
		if err != nil {
			return nil, err
		}
		if c := cur.reg; c != nil && c.Status == model.OpStatusAssigned && (c.OperationID == j.opID || cur.rev != j.baseRev) {
			return c, nil
		}
		r := &model.Registration{
			DeviceRegistrationState: model.DeviceRegistrationState{
				RegistrationID: j.req.RegistrationID, Status: model.OpStatusFailed, ErrorCode: code, ErrorMessage: msg,
			},
			EnrollmentGroupID: j.match.EnrollmentGroupID(), OperationID: j.opID, AttestationType: j.match.AttestationType,
		}
		if c := cur.reg; c != nil {
			r.Hub, r.HubDeviceID, r.InitialHub = c.Hub, c.HubDeviceID, c.InitialHub
		}
		out, err := j.write(ctx, cur, r)
		if !errors.Is(err, errStale) {
			return out, err
		}
	}
	return nil, store.ErrConflict
}

// hubErr turns a hub failure into a registration failure.
func hubErr(host string, err error) error {
	code := codeHubFailed
	if errors.Is(err, hub.ErrUnauthorized) {
		code = codeHubUnauthorized
	}
	return &allocate.Error{Code: code, Message: fmt.Sprintf("IoT hub %s: %v", host, err), Cause: err}
}

// failure maps an error to the errorCode and message of a failed
// registration.
func failure(err error) (int, string) {
	var ae *allocate.Error
	var pe *apierr.Error
	switch {
	case errors.As(err, &ae):
		return ae.Code, ae.Message
	case errors.As(err, &pe):
		return pe.Code, pe.Message
	case errors.Is(err, context.DeadlineExceeded):
		return apierr.CodeInternal, "The registration did not complete in time; register again."
	}
	return apierr.CodeInternal, "Internal error while assigning the device; register again."
}
