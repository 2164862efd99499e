package console

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// fakeInstances is an in-memory Instances for the handler tests.
type fakeInstances struct {
	mu      sync.Mutex
	views   map[string]*instance.View
	created []instance.Spec
	calls   []string // mutating calls, "Method instance ..."
}

func (f *fakeInstances) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeInstances) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeInstances) Delete(ctx context.Context, name, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.views[name]; !ok {
		return notFoundErr()
	}
	f.calls = append(f.calls, "Delete "+name)
	delete(f.views, name)
	return nil
}

// policy finds policy keyName of instance name; f.mu is held.
func (f *fakeInstances) policy(name, keyName string) (*model.AccessPolicy, error) {
	v, ok := f.views[name]
	if !ok {
		return nil, notFoundErr()
	}
	p := v.Instance.Policy(keyName)
	if p == nil {
		return nil, &instance.Error{Kind: instance.ErrNotFound, Msg: "policy " + keyName + " not found"}
	}
	return p, nil
}

func (f *fakeInstances) SetPolicy(ctx context.Context, name, keyName, rights string, createOnly bool) (model.AccessPolicy, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "SetPolicy "+name+" "+keyName+" "+rights)
	canon, err := instance.ParseRights(rights)
	if err != nil {
		return model.AccessPolicy{}, false, err
	}
	if p, err := f.policy(name, keyName); err == nil {
		if createOnly {
			return model.AccessPolicy{}, false, &instance.Error{Kind: instance.ErrPrecondition, Msg: "policy " + keyName + " already exists"}
		}
		p.Rights = canon
		return *p, false, nil
	}
	v, ok := f.views[name]
	if !ok {
		return model.AccessPolicy{}, false, notFoundErr()
	}
	p := model.AccessPolicy{KeyName: keyName, Rights: canon, PrimaryKey: b64("p-" + keyName), SecondaryKey: b64("s-" + keyName)}
	v.Instance.AuthorizationPolicies = append(slices.Clone(v.Instance.AuthorizationPolicies), p)
	return p, true, nil
}

func (f *fakeInstances) RemovePolicy(ctx context.Context, name, keyName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "RemovePolicy "+name+" "+keyName)
	v, ok := f.views[name]
	if !ok {
		return notFoundErr()
	}
	ps := slices.DeleteFunc(slices.Clone(v.Instance.AuthorizationPolicies), func(p model.AccessPolicy) bool { return strings.EqualFold(p.KeyName, keyName) })
	if len(ps) == len(v.Instance.AuthorizationPolicies) {
		return &instance.Error{Kind: instance.ErrNotFound, Msg: "policy " + keyName + " not found"}
	}
	v.Instance.AuthorizationPolicies = ps
	return nil
}

var regenerated int

func (f *fakeInstances) RegenerateKey(ctx context.Context, name, keyName, which string) (model.AccessPolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "RegenerateKey "+name+" "+keyName+" "+which)
	p, err := f.policy(name, keyName)
	if err != nil {
		return model.AccessPolicy{}, err
	}
	regenerated++
	k := b64("regenerated-" + strings.Repeat("x", regenerated))
	switch which {
	case "primary":
		p.PrimaryKey = k
	case "secondary":
		p.SecondaryKey = k
	default:
		return model.AccessPolicy{}, &instance.Error{Kind: instance.ErrInvalid, Msg: "key must be primary or secondary"}
	}
	return *p, nil
}

func newFakeInstances(views ...*instance.View) *fakeInstances {
	f := &fakeInstances{views: map[string]*instance.View{}}
	for _, v := range views {
		f.views[v.Instance.Name] = v
	}
	return f
}

func notFoundErr() error {
	return &instance.Error{Kind: instance.ErrNotFound, Msg: "instance not found"}
}

func (f *fakeInstances) ListAll(ctx context.Context) ([]*instance.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*instance.View
	for _, v := range f.views {
		out = append(out, v)
	}
	return out, nil
}

func (f *fakeInstances) Get(ctx context.Context, name string) (*instance.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.views[name]
	if !ok {
		return nil, notFoundErr()
	}
	cp := *v
	return &cp, nil
}

func (f *fakeInstances) Lookup(ctx context.Context, name string) (*model.Instance, error) {
	v, err := f.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	in := v.Instance
	in.AuthorizationPolicies = slices.Clone(in.AuthorizationPolicies)
	return &in, nil
}

func (f *fakeInstances) Create(ctx context.Context, spec instance.Spec) (*instance.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, spec)
	dr := !*spec.EnableDataResidency
	v := &instance.View{Instance: model.Instance{Name: spec.Name, Location: spec.Location, EnableDataResidency: !dr},
		Dir: model.DirEntry{Name: spec.Name, Primary: spec.Location, DREnabled: dr, Role: model.RolePrimary, Epoch: 1}}
	f.views[spec.Name] = v
	return v, nil
}

func (f *fakeInstances) setKey(name, policy, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.views[name].Instance.Policy(policy)
	p.PrimaryKey = key
}

func (f *fakeInstances) Stats(ctx context.Context, name string) (instance.Stats, error) {
	return instance.Stats{Enrollments: 2, Groups: 1, Registrations: 3}, nil
}

func (f *fakeInstances) AddHub(ctx context.Context, name string, s instance.HubSpec) (model.LinkedHub, bool, error) {
	f.record("AddHub " + name)
	return model.LinkedHub{Name: "hub"}, true, nil
}
func (f *fakeInstances) RemoveHub(ctx context.Context, name, hostName string) error {
	f.record("RemoveHub " + name)
	return nil
}
func (f *fakeInstances) Certificates(ctx context.Context, name string) ([]model.Certificate, error) {
	return nil, nil
}
func (f *fakeInstances) PutCertificate(ctx context.Context, name, certName string, s instance.CertSpec) (model.Certificate, bool, error) {
	f.record("PutCertificate " + name)
	return model.Certificate{Name: certName}, true, nil
}
func (f *fakeInstances) GenerateVerificationCode(ctx context.Context, name, certName, ifMatch string) (model.Certificate, error) {
	f.record("GenerateVerificationCode " + name)
	return model.Certificate{Name: certName, VerificationCode: "CODE"}, nil
}
func (f *fakeInstances) VerifyCertificate(ctx context.Context, name, certName, ifMatch, proof string) (model.Certificate, error) {
	f.record("VerifyCertificate " + name)
	return model.Certificate{Name: certName, IsVerified: true}, nil
}
func (f *fakeInstances) DeleteCertificate(ctx context.Context, name, certName, ifMatch string) error {
	f.record("DeleteCertificate " + name)
	return nil
}

// fakeEnrollments is an in-memory Enrollments.
type fakeEnrollments struct {
	mu     sync.Mutex
	enr    map[string]*model.IndividualEnrollment // instance/id
	grp    map[string]*model.EnrollmentGroup      // instance/id
	regs   map[string]*model.Registration
	calls  []string        // mutating calls
	fenced map[string]bool // instances whose records fail with store.ErrFenced
}

func newFakeEnrollments() *fakeEnrollments {
	return &fakeEnrollments{enr: map[string]*model.IndividualEnrollment{}, grp: map[string]*model.EnrollmentGroup{},
		regs: map[string]*model.Registration{}, fenced: map[string]bool{}}
}

func (f *fakeEnrollments) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// check fails like the store for a fenced instance; f.mu is held.
func (f *fakeEnrollments) check(inst string) error {
	if f.fenced[inst] {
		return fmt.Errorf("%w: %s is secondary, primary in northeurope (epoch 2)", store.ErrFenced, inst)
	}
	return nil
}

func (f *fakeEnrollments) ListGroupRegistrations(ctx context.Context, inst, groupID, after string, limit int) ([]*model.Registration, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, "", err
	}
	var out []*model.Registration
	for k, r := range f.regs {
		if in, _, _ := strings.Cut(k, "/"); in == inst && r.EnrollmentGroupID == groupID {
			out = append(out, r)
		}
	}
	return out, "", nil
}

func (f *fakeEnrollments) ListEnrollments(ctx context.Context, inst, after string, limit int) ([]*model.IndividualEnrollment, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, "", err
	}
	var ids []string
	for k := range f.enr {
		if in, id, _ := strings.Cut(k, "/"); in == inst && id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	next := ""
	if len(ids) > limit {
		ids, next = ids[:limit], ids[limit-1]
	}
	var out []*model.IndividualEnrollment
	for _, id := range ids {
		out = append(out, f.enr[inst+"/"+id])
	}
	return out, next, nil
}

func (f *fakeEnrollments) GetEnrollment(ctx context.Context, inst, id string) (*model.IndividualEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	e, ok := f.enr[inst+"/"+id]
	if !ok {
		return nil, enrollment.ErrNotFound
	}
	cp := *e
	return &cp, nil
}

func (f *fakeEnrollments) PutEnrollment(ctx context.Context, inst string, e *model.IndividualEnrollment, ifMatch string) (*model.IndividualEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, "PutEnrollment "+inst+" "+e.RegistrationID)
	f.enr[inst+"/"+e.RegistrationID] = e
	return e, nil
}

func (f *fakeEnrollments) CreateEnrollment(ctx context.Context, inst string, e *model.IndividualEnrollment) (*model.IndividualEnrollment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, "CreateEnrollment "+inst+" "+e.RegistrationID)
	if _, ok := f.enr[inst+"/"+e.RegistrationID]; ok {
		return nil, enrollment.ErrExists
	}
	f.enr[inst+"/"+e.RegistrationID] = e
	return e, nil
}

func (f *fakeEnrollments) DeleteEnrollment(ctx context.Context, inst, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "DeleteEnrollment "+inst+" "+id)
	delete(f.enr, inst+"/"+id)
	return nil
}

func (f *fakeEnrollments) ListGroups(ctx context.Context, inst, after string, limit int) ([]*model.EnrollmentGroup, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, "", err
	}
	var out []*model.EnrollmentGroup
	for k, g := range f.grp {
		if in, _, _ := strings.Cut(k, "/"); in == inst {
			out = append(out, g)
		}
	}
	return out, "", nil
}
func (f *fakeEnrollments) GetGroup(ctx context.Context, inst, id string) (*model.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	g, ok := f.grp[inst+"/"+id]
	if !ok {
		return nil, enrollment.ErrNotFound
	}
	cp := *g
	return &cp, nil
}
func (f *fakeEnrollments) PutGroup(ctx context.Context, inst string, g *model.EnrollmentGroup, ifMatch string) (*model.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, "PutGroup "+inst+" "+g.EnrollmentGroupID)
	f.grp[inst+"/"+g.EnrollmentGroupID] = g
	return g, nil
}
func (f *fakeEnrollments) CreateGroup(ctx context.Context, inst string, g *model.EnrollmentGroup) (*model.EnrollmentGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(inst); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, "CreateGroup "+inst+" "+g.EnrollmentGroupID)
	if _, ok := f.grp[inst+"/"+g.EnrollmentGroupID]; ok {
		return nil, enrollment.ErrExists
	}
	f.grp[inst+"/"+g.EnrollmentGroupID] = g
	return g, nil
}

func (f *fakeEnrollments) DeleteGroup(ctx context.Context, inst, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "DeleteGroup "+inst+" "+id)
	delete(f.grp, inst+"/"+id)
	return nil
}

func (f *fakeEnrollments) GetRegistration(ctx context.Context, inst, id string) (*model.Registration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.regs[inst+"/"+id]
	if !ok {
		return nil, enrollment.ErrNotFound
	}
	return r, nil
}
func (f *fakeEnrollments) DeleteRegistration(ctx context.Context, inst, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "DeleteRegistration "+inst+" "+id)
	return nil
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
