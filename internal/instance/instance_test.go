package instance

import (
	"context"
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

var scopeRE = regexp.MustCompile(`^0ne[0-9A-F]{8}$`)

func TestCreateDefaults(t *testing.T) {
	m, _ := newManager(t, "")
	v := mustCreate(t, m, Spec{Name: "Create-Defaults", Location: "West Europe"})
	in := v.Instance
	if in.Name != "create-defaults" {
		t.Errorf("name = %q, want lower case", in.Name)
	}
	if !scopeRE.MatchString(in.IDScope) {
		t.Errorf("idScope = %q", in.IDScope)
	}
	if in.Location != "westeurope" || in.SecondaryLocation != "northeurope" {
		t.Errorf("location %q secondary %q", in.Location, in.SecondaryLocation)
	}
	if in.AllocationPolicy != model.InstanceAllocationHashed || in.State != StateActive || in.Etag == "" {
		t.Errorf("allocation %q state %q etag %q", in.AllocationPolicy, in.State, in.Etag)
	}
	if len(in.AuthorizationPolicies) != 1 {
		t.Fatalf("policies = %+v", in.AuthorizationPolicies)
	}
	p := in.AuthorizationPolicies[0]
	if p.KeyName != model.OwnerPolicy || p.Rights != "ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite" {
		t.Errorf("owner policy = %+v", p)
	}
	for _, k := range []string{p.PrimaryKey, p.SecondaryKey} {
		if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
			t.Errorf("key %q: %d bytes, %v", k, len(b), err)
		}
	}
	d := v.Dir
	if d.Primary != "westeurope" || d.Secondary != "northeurope" || d.Epoch != 1 || !d.DREnabled || d.Role != model.RolePrimary || d.IDScope != in.IDScope {
		t.Errorf("dir = %+v", d)
	}
	if v.ServiceHostName != "create-defaults.localhost:8443" || v.DeviceHostName != "localhost:8443" {
		t.Errorf("hosts %q %q", v.ServiceHostName, v.DeviceHostName)
	}
	if v.Subscription() != DefaultSubscription || v.ResourceGroup() != DefaultResourceGroup {
		t.Errorf("scope %s/%s", v.Subscription(), v.ResourceGroup())
	}
	if name, err := shared.Store(t).ResolveScope(context.Background(), strings.ToLower(in.IDScope)); err != nil || name != in.Name {
		t.Errorf("ResolveScope = %q, %v", name, err)
	}
}

func TestCreateRefused(t *testing.T) {
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "refused-taken", Location: "westeurope"})
	tests := []struct {
		name string
		spec Spec
		kind error
		msg  string
	}{
		{"too short", Spec{Name: "ab", Location: "westeurope"}, ErrInvalid, "3 to 50"},
		{"too long", Spec{Name: strings.Repeat("a", 51), Location: "westeurope"}, ErrInvalid, "3 to 50"},
		{"leading dash", Spec{Name: "-abc", Location: "westeurope"}, ErrInvalid, "start or end"},
		{"trailing dash", Spec{Name: "abc-", Location: "westeurope"}, ErrInvalid, "start or end"},
		{"digits", Spec{Name: "12345", Location: "westeurope"}, ErrInvalid, "all digits"},
		{"underscore", Spec{Name: "a_bc", Location: "westeurope"}, ErrInvalid, "letters, digits"},
		{"no location", Spec{Name: "refused-a"}, ErrInvalid, "location is required"},
		{"unknown location", Spec{Name: "refused-a", Location: "mars"}, ErrInvalid, "not a region"},
		{"residency not allowed", Spec{Name: "refused-a", Location: "westeurope", EnableDataResidency: ptr(true)}, ErrInvalid, "Brazil South"},
		{"bad allocation", Spec{Name: "refused-a", Location: "westeurope", AllocationPolicy: "random"}, ErrInvalid, "allocationPolicy"},
		{"taken", Spec{Name: "REFUSED-TAKEN", Location: "westeurope"}, ErrExists, "taken"},
		{"bad rights", Spec{Name: "refused-a", Location: "westeurope", Policies: []PolicySpec{{KeyName: "p", Rights: "Root"}}}, ErrInvalid, "unknown right"},
		{"short key", Spec{Name: "refused-a", Location: "westeurope", Policies: []PolicySpec{{KeyName: "p", Rights: "EnrollmentRead", PrimaryKey: "AAAA"}}}, ErrInvalid, "16 to 64 bytes"},
		{"bad hub", Spec{Name: "refused-a", Location: "westeurope", Hubs: []HubSpec{{ConnectionString: hubCS("bad.localhost")}}}, ErrHubCheck, "link-time check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Create(context.Background(), tt.spec)
			wantKind(t, err, tt.kind)
			if !strings.Contains(Message(err), tt.msg) {
				t.Errorf("message %q does not contain %q", Message(err), tt.msg)
			}
		})
	}
	if _, err := m.Get(context.Background(), "refused-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused instance exists: %v", err)
	}
}

func TestDataResidency(t *testing.T) {
	m, _ := newManager(t, "")
	v := mustCreate(t, m, Spec{Name: "residency-br", Location: "brazilsouth", EnableDataResidency: ptr(true)})
	if !v.Instance.EnableDataResidency || v.Instance.SecondaryLocation != "" || v.Dir.DREnabled || v.Dir.Secondary != "" {
		t.Errorf("residency instance: %+v %+v", v.Instance, v.Dir)
	}
	v = mustCreate(t, m, Spec{Name: "residency-br-dr", Location: "brazilsouth"})
	if v.Instance.SecondaryLocation != "southcentralus" || !v.Dir.DREnabled {
		t.Errorf("DR instance: %+v", v.Dir)
	}
}

func TestWrongRegion(t *testing.T) {
	m, _ := newManager(t, "westeurope")
	_, err := m.Create(context.Background(), Spec{Name: "wrong-region", Location: "eastus"})
	wantKind(t, err, ErrWrongRegion)
	v := mustCreate(t, m, Spec{Name: "right-region", Location: "westeurope"})
	if v.Dir.Primary != "westeurope" {
		t.Errorf("primary = %q", v.Dir.Primary)
	}
}

func TestPutIdempotentAndImmutable(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	spec := Spec{Name: "put-idem", Location: "westeurope", Tags: map[string]string{"env": "test"}}
	v, created, err := m.Put(ctx, spec)
	if err != nil || !created {
		t.Fatalf("Put = %v, %v", created, err)
	}
	etag := v.Instance.Etag
	v, created, err = m.Put(ctx, spec)
	if err != nil || created || v.Instance.Etag != etag {
		t.Fatalf("re-Put: created %v err %v etag %q -> %q", created, err, etag, v.Instance.Etag)
	}
	spec.AllocationPolicy = "geolatency"
	v, _, err = m.Put(ctx, spec)
	if err != nil || v.Instance.AllocationPolicy != "GeoLatency" || v.Instance.Etag == etag {
		t.Fatalf("allocation change: %v %+v", err, v.Instance)
	}
	refused := []struct {
		name string
		mod  func(*Spec)
		kind error
	}{
		{"location", func(s *Spec) { s.Location = "northeurope" }, ErrInvalid},
		{"residency", func(s *Spec) { s.EnableDataResidency = ptr(true) }, ErrInvalid},
		{"if-match", func(s *Spec) { s.IfMatch = `"nope"` }, ErrPrecondition},
		{"create-only", func(s *Spec) { s.CreateOnly = true }, ErrPrecondition},
		{"other group", func(s *Spec) { s.ResourceGroup = "other" }, ErrExists},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			s := spec
			tt.mod(&s)
			_, _, err := m.Put(ctx, s)
			wantKind(t, err, tt.kind)
		})
	}
	s := spec
	s.IfMatch = v.Instance.Etag
	s.Tags = map[string]string{}
	v2, _, err := m.Put(ctx, s)
	if err != nil || v2.Instance.Tags != nil {
		t.Errorf("clear tags with If-Match: %v %+v", err, v2)
	}
	if _, _, err := m.Put(ctx, Spec{Name: "put-missing", Location: "westeurope", IfMatch: "*"}); !errors.Is(err, ErrPrecondition) {
		t.Errorf("If-Match on a missing instance: %v", err)
	}
}

func TestListDeleteStats(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "list-a", Location: "westeurope", SubscriptionID: "sub-list", ResourceGroup: "rg1"})
	mustCreate(t, m, Spec{Name: "list-b", Location: "westeurope", SubscriptionID: "SUB-LIST", ResourceGroup: "rg2"})
	all, err := m.List(ctx, "sub-list", "")
	if err != nil || len(all) != 2 {
		t.Fatalf("List(sub) = %d, %v", len(all), err)
	}
	rg1, _ := m.List(ctx, "sub-list", "RG1")
	if len(rg1) != 1 || rg1[0].Instance.Name != "list-a" {
		t.Errorf("List(rg1) = %v", rg1)
	}
	err = shared.Store(t).Update(ctx, "list-a", func(tx *store.Tx) error {
		for i, kind := range []string{store.KindEnrollment, store.KindEnrollment, store.KindGroup, store.KindRegistration} {
			if err := tx.Put(store.Key("list-a", kind, string(rune('a'+i))), map[string]int{"i": i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats(ctx, "list-a")
	if err != nil || st != (Stats{Enrollments: 2, Groups: 1, Registrations: 1}) {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	wantKind(t, m.Delete(ctx, "list-a", `"wrong"`), ErrPrecondition)
	if err := m.Delete(ctx, "LIST-A", ""); err != nil {
		t.Fatal(err)
	}
	_, err = m.Get(ctx, "list-a")
	wantKind(t, err, ErrNotFound)
	wantKind(t, m.Delete(ctx, "list-a", ""), ErrNotFound)
	// Names from URL paths cannot alias other keys ("list-b/hub/conf" would).
	for _, alias := range []string{"list-b/hub", "list-b/../list-b", ""} {
		_, err = m.Lookup(ctx, alias)
		wantKind(t, err, ErrNotFound)
	}
	_, err = m.Stats(ctx, "list-a")
	wantKind(t, err, ErrNotFound)
}

func TestCheckName(t *testing.T) {
	ctx := context.Background()
	m, _ := newManager(t, "")
	mustCreate(t, m, Spec{Name: "check-name", Location: "westeurope"})
	for _, tt := range []struct {
		name, reason string
		ok           bool
	}{{"check-name", "AlreadyExists", false}, {"Check-Name", "AlreadyExists", false}, {"x", "Invalid", false}, {"check-free", "", true}} {
		got, err := m.CheckName(ctx, tt.name)
		if err != nil || got.NameAvailable != tt.ok || got.Reason != tt.reason {
			t.Errorf("CheckName(%q) = %+v, %v", tt.name, got, err)
		}
	}
}
