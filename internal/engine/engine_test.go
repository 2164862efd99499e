package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/internal/store"
)

func TestMain(m *testing.M) { enrollmenttest.Main(m) }

// env is an instance linked to two simulated hubs, and an engine.
type env struct {
	t    *testing.T
	st   *store.Store
	in   *enrollmenttest.Instance
	sim  *hubsim.Sim
	hubs []string // host:port of the linked hubs
	enr  *enrollment.Service
	e    *Engine
}

var instanceSeq int

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	st := enrollmenttest.Store(t)
	instanceSeq++
	in := enrollmenttest.NewInstance(t, st, fmt.Sprintf("eng%d", instanceSeq))
	ca, err := pki.NewCA("engine test")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := hubsim.New(hubsim.Config{Hubs: []hubsim.HubConfig{hubsim.NewHubConfig("hub-a.localhost"), hubsim.NewHubConfig("hub-b.localhost")}})
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := hubsim.TLSConfig(ca, sim)
	srv, err := hubsim.Listen(sim, "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &env{t: t, st: st, in: in, sim: sim, enr: enrollment.New(st)}
	err = st.Update(context.Background(), in.Name, func(tx *store.Tx) error {
		tx.Delete(store.Key(in.Name, store.KindHub, enrollmenttest.Hub1))
		tx.Delete(store.Key(in.Name, store.KindHub, enrollmenttest.Hub2))
		for _, h := range []string{"hub-a.localhost", "hub-b.localhost"} {
			cs, _ := srv.ConnectionString(h)
			host := fmt.Sprintf("%s:%d", h, srv.Port())
			e.hubs = append(e.hubs, host)
			if err := tx.Put(store.Key(in.Name, store.KindHub, host), model.LinkedHub{Name: host, ConnectionString: cs,
				Location: enrollmenttest.Region, AllocationWeight: 1, ApplyAllocationPolicy: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.HubTLS, cfg.Region = st, ca.ClientTLS(), enrollmenttest.Region
	if e.e, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.e.Close() })
	return e
}

func (e *env) hubHost(i int) string { return e.hubs[i] }

func (e *env) enroll(id string, mut func(*model.IndividualEnrollment)) *model.IndividualEnrollment {
	e.t.Helper()
	en := &model.IndividualEnrollment{RegistrationID: id}
	en.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	if mut != nil {
		mut(en)
	}
	out, err := e.enr.PutEnrollment(context.Background(), e.in.Name, en, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) token(id, key string) string {
	tok, err := sas.Build(e.in.IDScope+"/registrations/"+id, key, "registration", time.Now().Add(time.Hour))
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) register(id, key string) (*Result, error) {
	return e.e.Register(context.Background(), &Request{IDScope: e.in.IDScope, RegistrationID: id, SASToken: e.token(id, key), Transport: "test"})
}

func (e *env) mustAssigned(id, key string) *model.RegistrationOperationStatus {
	e.t.Helper()
	r, err := e.register(id, key)
	if err != nil {
		e.t.Fatalf("Register(%s): %v", id, err)
	}
	if r.Status.Status != model.OpStatusAssigned {
		e.t.Fatalf("Register(%s) status = %s (%+v), want assigned", id, r.Status.Status, r.Status.RegistrationState)
	}
	return r.Status
}

func TestRegisterIndividualSymmetricKey(t *testing.T) {
	e := newEnv(t, Config{})
	en := e.enroll("dev-1", nil)
	st := e.mustAssigned("dev-1", en.Attestation.SymmetricKey.PrimaryKey)
	rs := st.RegistrationState
	if rs.Substatus != model.SubstatusInitialAssignment || rs.DeviceID != "dev-1" || rs.AssignedHub == "" || rs.Etag == "" || st.OperationID == "" {
		t.Fatalf("registration state = %+v", rs)
	}
	d, ok := e.sim.Device(rs.AssignedHub, "dev-1")
	if !ok || d.Auth.SymmetricKey.PrimaryKey != en.Attestation.SymmetricKey.PrimaryKey {
		t.Fatalf("hub identity = %+v, %v; want the enrollment's keys", d, ok)
	}
	// The secondary key works too, and a repeat is idempotent: same hub,
	// same identity (generation), no new identity.
	st2 := e.mustAssigned("dev-1", en.Attestation.SymmetricKey.SecondaryKey)
	if st2.RegistrationState.AssignedHub != rs.AssignedHub || st2.OperationID == st.OperationID {
		t.Errorf("repeat: hub %s -> %s, op %s -> %s", rs.AssignedHub, st2.RegistrationState.AssignedHub, st.OperationID, st2.OperationID)
	}
	d2, _ := e.sim.Device(rs.AssignedHub, "dev-1")
	if d2.GenerationID != d.GenerationID || d2.ETag != d.ETag {
		t.Errorf("repeat touched the hub identity: %+v -> %+v", d, d2)
	}
	if n := len(e.sim.Devices(e.hubHost(0))) + len(e.sim.Devices(e.hubHost(1))); n != 1 {
		t.Errorf("%d identities in the hubs, want 1", n)
	}
	reg, err := e.enr.GetRegistration(context.Background(), e.in.Name, "dev-1")
	if err != nil || reg.Status != model.OpStatusAssigned || reg.OperationID != st2.OperationID {
		t.Errorf("record = %+v, %v", reg, err)
	}
}

func TestRegisterGroupDerivedKey(t *testing.T) {
	e := newEnv(t, Config{})
	g := &model.EnrollmentGroup{EnrollmentGroupID: "grp"}
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	g.InitialTwin = &model.InitialTwin{Tags: json.RawMessage(`{"site":"a"}`), Properties: &model.InitialTwinProperties{Desired: json.RawMessage(`{"rate":5}`)}}
	g, err := e.enr.PutGroup(context.Background(), e.in.Name, g, "")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := sas.DeriveKey(g.Attestation.SymmetricKey.PrimaryKey, "grp-dev-1")
	st := e.mustAssigned("grp-dev-1", key)
	host := st.RegistrationState.AssignedHub
	tw, ok := e.sim.Twin(host, "grp-dev-1")
	if !ok || tw.Tags["site"] != "a" || tw.Properties.Desired["rate"] != float64(5) {
		t.Errorf("twin = %+v, want the group's initial twin", tw)
	}
	if _, err := e.register("grp-dev-1", g.Attestation.SymmetricKey.PrimaryKey); !isStatus(err, 401) {
		t.Errorf("group key itself: err = %v, want 401", err)
	}
	if st.RegistrationState.SymmetricKey == nil || st.RegistrationState.SymmetricKey.EnrollmentGroupID != "grp" {
		t.Errorf("symmetricKey = %+v, want the group id", st.RegistrationState.SymmetricKey)
	}
}

func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t, Config{})
	en := e.enroll("dev-r", nil)
	e.enroll("dev-off", func(x *model.IndividualEnrollment) { x.ProvisioningStatus = model.StatusDisabled })
	if _, err := e.register("dev-r", enrollmenttest.RandomKey()); !isStatus(err, 401) {
		t.Errorf("wrong key: %v, want 401", err)
	}
	_, err := e.e.Register(context.Background(), &Request{IDScope: "0ne00000000", RegistrationID: "dev-r", SASToken: e.token("dev-r", en.Attestation.SymmetricKey.PrimaryKey)})
	if !isStatus(err, 401) && !isStatus(err, 404) {
		t.Errorf("unknown scope: %v, want 404", err)
	}
	expired, _ := sas.Build(e.in.IDScope+"/registrations/dev-r", en.Attestation.SymmetricKey.PrimaryKey, "registration", time.Now().Add(-time.Hour))
	if _, err := e.e.Register(context.Background(), &Request{IDScope: e.in.IDScope, RegistrationID: "dev-r", SASToken: expired}); !isStatus(err, 401) {
		t.Errorf("expired token: %v, want 401", err)
	}
	r, err := e.register("dev-off", mustKey(t, e, "dev-off"))
	if err != nil || r.Status.Status != model.OpStatusDisabled {
		t.Errorf("disabled enrollment: %+v %v, want status disabled", r, err)
	}
	if n := len(e.sim.Devices(e.hubHost(0))) + len(e.sim.Devices(e.hubHost(1))); n != 0 {
		t.Errorf("%d identities created by refused registrations", n)
	}
}

// TestAuthenticate: Authenticate refuses what Register refuses, accepts a
// disabled enrollment (Register answers "disabled"), and never registers,
// throttles or writes anything.
func TestAuthenticate(t *testing.T) {
	lim := &countingLimiter{}
	e := newEnv(t, Config{Throttle: lim})
	en := e.enroll("dev-a", nil)
	e.enroll("dev-a-off", func(x *model.IndividualEnrollment) { x.ProvisioningStatus = model.StatusDisabled })
	key := en.Attestation.SymmetricKey.PrimaryKey
	tests := []struct {
		name   string
		req    *Request
		status int // 0: success
	}{
		{"primary key", &Request{IDScope: e.in.IDScope, RegistrationID: "dev-a", SASToken: e.token("dev-a", key)}, 0},
		{"registration id in another case", &Request{IDScope: e.in.IDScope, RegistrationID: "DEV-A", SASToken: e.token("DEV-A", key)}, 0},
		{"disabled enrollment", &Request{IDScope: e.in.IDScope, RegistrationID: "dev-a-off", SASToken: e.token("dev-a-off", mustKey(t, e, "dev-a-off"))}, 0},
		{"wrong key", &Request{IDScope: e.in.IDScope, RegistrationID: "dev-a", SASToken: e.token("dev-a", enrollmenttest.RandomKey())}, 401},
		{"token of another device", &Request{IDScope: e.in.IDScope, RegistrationID: "dev-a-off", SASToken: e.token("dev-a", key)}, 401},
		{"no credential", &Request{IDScope: e.in.IDScope, RegistrationID: "dev-a"}, 401},
		{"unknown scope", &Request{IDScope: "0ne0000FFFF", RegistrationID: "dev-a", SASToken: e.token("dev-a", key)}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.e.Authenticate(context.Background(), tt.req)
			switch {
			case tt.status == 0 && err != nil:
				t.Errorf("Authenticate = %v, want nil", err)
			case tt.status != 0 && !isStatus(err, tt.status):
				t.Errorf("Authenticate = %v, want %d", err, tt.status)
			}
		})
	}
	if n := len(e.sim.Devices(e.hubHost(0))) + len(e.sim.Devices(e.hubHost(1))); n != 0 {
		t.Errorf("%d identities created by Authenticate", n)
	}
	if _, err := e.enr.GetRegistration(context.Background(), e.in.Name, "dev-a"); err == nil {
		t.Error("Authenticate wrote a registration record")
	}
	if lim.calls.Load() != 0 {
		t.Errorf("Authenticate consulted the throttle %d times", lim.calls.Load())
	}
}

// countingLimiter allows everything and counts the calls.
type countingLimiter struct{ calls atomic.Int64 }

func (l *countingLimiter) AllowRegister(string) (bool, time.Duration) {
	l.calls.Add(1)
	return true, 0
}

func (l *countingLimiter) AllowPoll(string, string) (bool, time.Duration) {
	l.calls.Add(1)
	return true, 0
}

func mustKey(t *testing.T, e *env, id string) string {
	en, err := e.enr.GetEnrollment(context.Background(), e.in.Name, id)
	if err != nil {
		t.Fatal(err)
	}
	return en.Attestation.SymmetricKey.PrimaryKey
}

func TestRegisterSlowPathPolls(t *testing.T) {
	e := newEnv(t, Config{FastPath: -1})
	// With no fast-path wait the answer is "assigning", unless the work
	// finished while the marker was being written (then it is the result):
	// try a few devices until one shows the slow path.
	var r *Result
	var id, key string
	for i := range 10 {
		id = fmt.Sprintf("dev-slow-%d", i)
		en := e.enroll(id, nil)
		key = en.Attestation.SymmetricKey.PrimaryKey
		var err error
		if r, err = e.register(id, key); err != nil {
			t.Fatal(err)
		}
		if r.Status.Status == model.OpStatusAssigning {
			break
		}
	}
	if r.Status.Status != model.OpStatusAssigning || r.RetryAfter < 1 || r.Status.RegistrationState.RegistrationID != id {
		t.Fatalf("slow register = %+v, want assigning with Retry-After and registrationState.registrationId", r.Status)
	}
	req := &Request{IDScope: e.in.IDScope, RegistrationID: id, SASToken: e.token(id, key)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := e.e.OperationStatus(context.Background(), req, r.Status.OperationID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Status == model.OpStatusAssigned {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %s", p.Status.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.e.OperationStatus(context.Background(), req, "5.0000.nope"); !isStatus(err, 404) {
		t.Errorf("unknown operation: %v, want 404", err)
	}
	rs, err := e.e.RegistrationStatus(context.Background(), req)
	if err != nil || rs.Status != model.OpStatusAssigned {
		t.Errorf("status lookup = %+v, %v", rs, err)
	}
}

func TestDeadHubSkipped(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetDown(e.hubHost(0), true)
	for i := range 6 {
		id := fmt.Sprintf("dead-%d", i)
		en := e.enroll(id, nil)
		st := e.mustAssigned(id, en.Attestation.SymmetricKey.PrimaryKey)
		if st.RegistrationState.AssignedHub != e.hubHost(1) && i >= failThreshold {
			t.Errorf("%s assigned to the dead hub %s", id, st.RegistrationState.AssignedHub)
		}
	}
	e.sim.SetDown(e.hubHost(1), true)
	en := e.enroll("dead-all", nil)
	var last *Result
	for range failThreshold + 1 {
		r, err := e.register("dead-all", en.Attestation.SymmetricKey.PrimaryKey)
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	if last.Status.Status != model.OpStatusFailed || last.Status.RegistrationState.ErrorCode == 0 {
		t.Errorf("no live hub: %+v, want failed with an error code", last.Status.RegistrationState)
	}
}

func TestReprovisionMigrate(t *testing.T) {
	e := newEnv(t, Config{})
	en := e.enroll("mover", func(x *model.IndividualEnrollment) {
		x.IoTHubs = []string{e.hubs[0]}
		x.InitialTwin = &model.InitialTwin{Properties: &model.InitialTwinProperties{Desired: json.RawMessage(`{"v":1}`)}}
	})
	key := en.Attestation.SymmetricKey.PrimaryKey
	e.mustAssigned("mover", key)
	c := e.hubClient(0)
	if _, err := c.UpdateTwin(context.Background(), "mover", hub.Twin{Tags: map[string]any{"moved": "yes"}}); err != nil {
		t.Fatal(err)
	}
	en.IoTHubs = []string{e.hubs[1]}
	if _, err := e.enr.PutEnrollment(context.Background(), e.in.Name, en, ""); err != nil {
		t.Fatal(err)
	}
	st := e.mustAssigned("mover", key)
	if st.RegistrationState.Substatus != model.SubstatusDeviceDataMigrated || st.RegistrationState.AssignedHub != e.hubHost(1) {
		t.Fatalf("after move: %+v", st.RegistrationState)
	}
	if _, ok := e.sim.Device(e.hubHost(0), "mover"); ok {
		t.Error("identity left in the old hub")
	}
	tw, ok := e.sim.Twin(e.hubHost(1), "mover")
	if !ok || tw.Tags["moved"] != "yes" || tw.Properties.Desired["v"] != float64(1) {
		t.Errorf("migrated twin = %+v", tw)
	}
}

func (e *env) hubClient(i int) *hub.Client {
	var h model.LinkedHub
	e.st.Get(context.Background(), store.Key(e.in.Name, store.KindHub, e.hubs[i]), &h)
	c, err := e.e.hubs.client(h.ConnectionString)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func isStatus(err error, status int) bool {
	var ae *apierr.Error
	return errors.As(err, &ae) && ae.Status == status
}
