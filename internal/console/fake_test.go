package console

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
)

// fakeInstances is an in-memory Instances for the handler tests.
type fakeInstances struct {
	mu      sync.Mutex
	views   map[string]*instance.View
	created []instance.Spec
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
	return model.LinkedHub{Name: "hub"}, true, nil
}
func (f *fakeInstances) RemoveHub(ctx context.Context, name, hostName string) error { return nil }
func (f *fakeInstances) Certificates(ctx context.Context, name string) ([]model.Certificate, error) {
	return nil, nil
}
func (f *fakeInstances) PutCertificate(ctx context.Context, name, certName string, s instance.CertSpec) (model.Certificate, bool, error) {
	return model.Certificate{Name: certName}, true, nil
}
func (f *fakeInstances) GenerateVerificationCode(ctx context.Context, name, certName, ifMatch string) (model.Certificate, error) {
	return model.Certificate{Name: certName, VerificationCode: "CODE"}, nil
}
func (f *fakeInstances) VerifyCertificate(ctx context.Context, name, certName, ifMatch, proof string) (model.Certificate, error) {
	return model.Certificate{Name: certName, IsVerified: true}, nil
}
func (f *fakeInstances) DeleteCertificate(ctx context.Context, name, certName, ifMatch string) error {
	return nil
}

// fakeEnrollments is an in-memory Enrollments.
type fakeEnrollments struct {
	mu   sync.Mutex
	enr  map[string]*model.IndividualEnrollment // instance/id
	regs map[string]*model.Registration
}

func newFakeEnrollments() *fakeEnrollments {
	return &fakeEnrollments{enr: map[string]*model.IndividualEnrollment{}, regs: map[string]*model.Registration{}}
}

func (f *fakeEnrollments) ListEnrollments(ctx context.Context, inst, after string, limit int) ([]*model.IndividualEnrollment, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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
	f.enr[inst+"/"+e.RegistrationID] = e
	return e, nil
}

func (f *fakeEnrollments) DeleteEnrollment(ctx context.Context, inst, id, ifMatch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.enr, inst+"/"+id)
	return nil
}

func (f *fakeEnrollments) ListGroups(ctx context.Context, inst, after string, limit int) ([]*model.EnrollmentGroup, string, error) {
	return nil, "", nil
}
func (f *fakeEnrollments) GetGroup(ctx context.Context, inst, id string) (*model.EnrollmentGroup, error) {
	return nil, enrollment.ErrNotFound
}
func (f *fakeEnrollments) PutGroup(ctx context.Context, inst string, g *model.EnrollmentGroup, ifMatch string) (*model.EnrollmentGroup, error) {
	return g, nil
}
func (f *fakeEnrollments) DeleteGroup(ctx context.Context, inst, id, ifMatch string) error {
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
