package instance

import (
	"context"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

func TestParseRights(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"EnrollmentRead", "EnrollmentRead", true},
		{"registrationstatusread, enrollmentread", "EnrollmentRead, RegistrationStatusRead", true},
		{" ServiceConfig ,DeviceConnect,", "ServiceConfig, DeviceConnect", true},
		{"ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite", "ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite", true},
		{"", "", false},
		{" , ", "", false},
		{"Root", "", false},
		{"EnrollmentRead, enrollmentread", "", false},
		{"EnrollmentRead EnrollmentWrite", "", false},
	}
	for _, tt := range tests {
		got, err := ParseRights(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseRights(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestPolicies(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	v := mustCreate(t, m, Spec{Name: "policies", Location: "westeurope"})
	owner := v.Instance.AuthorizationPolicies[0]

	p, created, err := m.SetPolicy(ctx, "policies", "reader", "registrationstatusread, ENROLLMENTREAD", false)
	if err != nil || !created || p.Rights != "EnrollmentRead, RegistrationStatusRead" || p.PrimaryKey == "" || p.SecondaryKey == "" {
		t.Fatalf("SetPolicy add = %+v, %v, %v", p, created, err)
	}
	p2, created, err := m.SetPolicy(ctx, "policies", "READER", "EnrollmentWrite", false)
	if err != nil || created || p2.KeyName != "reader" || p2.Rights != "EnrollmentWrite" || p2.PrimaryKey != p.PrimaryKey {
		t.Fatalf("SetPolicy update = %+v, %v, %v", p2, created, err)
	}
	_, _, err = m.SetPolicy(ctx, "policies", "reader", "EnrollmentRead", true)
	wantKind(t, err, ErrPrecondition)
	_, _, err = m.SetPolicy(ctx, "policies", "reader", "Everything", false)
	wantKind(t, err, ErrInvalid)
	_, _, err = m.SetPolicy(ctx, "policies", "bad name!", "EnrollmentRead", false)
	wantKind(t, err, ErrInvalid)
	_, _, err = m.SetPolicy(ctx, "nope-instance", "reader", "EnrollmentRead", false)
	wantKind(t, err, ErrNotFound)

	r, err := m.RegenerateKey(ctx, "policies", "reader", "Primary")
	if err != nil || r.PrimaryKey == p.PrimaryKey || r.SecondaryKey != p.SecondaryKey {
		t.Fatalf("RegenerateKey primary = %+v, %v", r, err)
	}
	r2, err := m.RegenerateKey(ctx, "policies", "reader", "secondaryKey")
	if err != nil || r2.SecondaryKey == p.SecondaryKey || r2.PrimaryKey != r.PrimaryKey {
		t.Fatalf("RegenerateKey secondary = %+v, %v", r2, err)
	}
	_, err = m.RegenerateKey(ctx, "policies", "reader", "tertiary")
	wantKind(t, err, ErrInvalid)
	_, err = m.RegenerateKey(ctx, "policies", "nobody", "primary")
	wantKind(t, err, ErrNotFound)

	keys, err := m.ListKeys(ctx, "policies")
	if err != nil || len(keys) != 2 {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	k, err := m.Keys(ctx, "policies", model.OwnerPolicy)
	if err != nil || k != owner {
		t.Errorf("Keys(owner) = %+v, %v", k, err)
	}
	wantKind(t, m.RemovePolicy(ctx, "policies", "nobody"), ErrNotFound)
	if err := m.RemovePolicy(ctx, "policies", "Reader"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, m.RemovePolicy(ctx, "policies", model.OwnerPolicy), ErrInvalid)
	_, err = m.Keys(ctx, "policies", "reader")
	wantKind(t, err, ErrNotFound)
}

func TestPoliciesThroughPut(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	v := mustCreate(t, m, Spec{Name: "policies-put", Location: "westeurope"})
	owner := v.Instance.AuthorizationPolicies[0]
	given := NewKey()
	spec := Spec{Name: "policies-put", Policies: []PolicySpec{
		{KeyName: model.OwnerPolicy, Rights: owner.Rights}, // keys omitted: kept
		{KeyName: "svc", Rights: "EnrollmentRead", PrimaryKey: given},
	}}
	v, _, err := m.Put(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	got := v.Instance.AuthorizationPolicies
	if len(got) != 2 || got[0] != owner || got[1].PrimaryKey != given || got[1].SecondaryKey == "" {
		t.Fatalf("policies = %+v", got)
	}
	etag := v.Instance.Etag
	spec.Policies[1].SecondaryKey = got[1].SecondaryKey
	if v, _, err = m.Put(ctx, spec); err != nil || v.Instance.Etag != etag {
		t.Errorf("re-PUT with same policies changed etag: %v", err)
	}
	if v, _, err = m.Put(ctx, Spec{Name: "policies-put", Policies: []PolicySpec{}}); err != nil || len(v.Instance.AuthorizationPolicies) != 2 {
		t.Errorf("empty policies should keep the set: %v %+v", err, v)
	}
	dup := Spec{Name: "policies-put", Policies: []PolicySpec{{KeyName: "a", Rights: "EnrollmentRead"}, {KeyName: "A", Rights: "EnrollmentRead"}}}
	_, _, err = m.Put(ctx, dup)
	wantKind(t, err, ErrInvalid)
	bad := Spec{Name: "policies-put", Policies: []PolicySpec{{KeyName: "a", Rights: "EnrollmentRead", SecondaryKey: "not base64!"}}}
	_, _, err = m.Put(ctx, bad)
	wantKind(t, err, ErrInvalid)
}
