package instance

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// maxScopeAttempts bounds the search for a free random ID scope.
const maxScopeAttempts = 16

// Spec is the desired state of an instance, as a create or an ARM PUT
// gives it. On update, a field left at its zero value (nil, "") keeps the
// current value; location and enableDataResidency cannot change.
type Spec struct {
	Name     string
	Location string // required on create
	// SubscriptionID and ResourceGroup place the instance in an ARM scope;
	// "" means DefaultSubscription / DefaultResourceGroup.
	SubscriptionID string
	ResourceGroup  string
	// EnableDataResidency opts out of disaster recovery (only where the
	// catalog allows it). Nil means false on create.
	EnableDataResidency *bool
	// AllocationPolicy is Hashed (the default), GeoLatency or Static,
	// case-insensitive.
	AllocationPolicy string
	// Tags: nil keeps (none on create); an empty map clears.
	Tags map[string]string
	// Policies: nil or empty keeps the current set (on create: the
	// provisioningserviceowner policy with all rights); otherwise it is the
	// whole set. A policy without keys keeps the keys of the policy of the
	// same name, or gets new ones.
	Policies []PolicySpec
	// Hubs: nil keeps the current set (none on create); non-nil, even
	// empty, is the whole set. A connection string whose key is masked
	// ("****") keeps the stored one of that hub.
	Hubs []HubSpec
	// IfMatch (update): the instance's etag must match ("*": any). On a
	// missing instance any If-Match fails.
	IfMatch string
	// CreateOnly (If-None-Match: *): fail with ErrPrecondition if the
	// instance exists.
	CreateOnly bool
}

// PolicySpec is a shared access policy in a Spec. Keys are base64 (16 to 64
// bytes); empty keys are kept or generated.
type PolicySpec struct {
	KeyName      string
	PrimaryKey   string
	SecondaryKey string
	Rights       string // comma-separated, case-insensitive
}

// Put creates the instance of spec, or updates it if it exists (ARM PUT).
// created says which. An instance of that name in another subscription or
// resource group gives ErrExists.
func (m *Manager) Put(ctx context.Context, spec Spec) (v *View, created bool, err error) {
	if err := ValidateName(spec.Name); err != nil {
		return nil, false, err
	}
	cur, err := m.st.Instance(ctx, CanonicalName(spec.Name))
	if errors.Is(err, store.ErrNotFound) {
		if spec.IfMatch != "" {
			return nil, false, errorf(ErrPrecondition, "instance %q does not exist, so If-Match cannot match", spec.Name)
		}
		v, err = m.Create(ctx, spec)
		return v, err == nil, err
	}
	if err != nil {
		return nil, false, err
	}
	if spec.CreateOnly {
		return nil, false, errorf(ErrPrecondition, "instance %q already exists", cur.Name)
	}
	if !InScope(cur, orDefault(spec.SubscriptionID, DefaultSubscription), orDefault(spec.ResourceGroup, DefaultResourceGroup)) {
		return nil, false, errorf(ErrExists, "the name %q is already used by an instance of another subscription or resource group", cur.Name)
	}
	v, err = m.Update(ctx, spec)
	return v, false, err
}

// Create creates a new instance: name validated and free, location in the
// catalog (and this node's region), data residency only where allowed,
// secondary region the catalog's pair unless residency, a fresh random ID
// scope, the owner policy unless Policies says otherwise, and the linked
// hubs of Hubs, each checked with the HubChecker.
func (m *Manager) Create(ctx context.Context, spec Spec) (*View, error) {
	in, dir, err := m.planCreate(spec)
	if err != nil {
		return nil, err
	}
	if taken, err := m.nameTaken(ctx, in.Name); err != nil {
		return nil, err
	} else if taken {
		return nil, errorf(ErrExists, "the name %q is already taken", in.Name)
	}
	hubs, err := m.buildHubs(ctx, spec.Hubs, in.Location, nil)
	if err != nil {
		return nil, err
	}
	if err := m.insert(ctx, dir, in); err != nil {
		return nil, err
	}
	if err := m.writeNewHubs(ctx, in.Name, hubs); err != nil {
		return nil, err
	}
	m.log.Info("instance created", "instance", in.Name, "id_scope", in.IDScope, "region", dir.Primary,
		"secondary", dir.Secondary, "dr", dir.DREnabled)
	return m.Get(ctx, in.Name)
}

// planCreate validates spec and builds the records of a new instance (ID
// scope still unset).
func (m *Manager) planCreate(spec Spec) (*model.Instance, model.DirEntry, error) {
	var dir model.DirEntry
	if err := ValidateName(spec.Name); err != nil {
		return nil, dir, err
	}
	residency := spec.EnableDataResidency != nil && *spec.EnableDataResidency
	r, err := m.placement(spec.Location, residency)
	if err != nil {
		return nil, dir, err
	}
	alloc, err := canonicalAllocation(spec.AllocationPolicy)
	if err != nil {
		return nil, dir, err
	}
	if err := validateTags(spec.Tags); err != nil {
		return nil, dir, err
	}
	policies, err := buildPolicies(spec.Policies, nil)
	if err != nil {
		return nil, dir, err
	}
	if len(policies) == 0 {
		policies = []model.AccessPolicy{ownerPolicy()}
	}
	now := m.now().UTC()
	in := &model.Instance{Name: CanonicalName(spec.Name), Location: r.Name, EnableDataResidency: residency,
		AllocationPolicy: orDefault(alloc, model.InstanceAllocationHashed), AuthorizationPolicies: policies,
		State: StateActive, SubscriptionID: orDefault(spec.SubscriptionID, DefaultSubscription),
		ResourceGroup: orDefault(spec.ResourceGroup, DefaultResourceGroup), Tags: nonEmpty(spec.Tags),
		Etag: newEtag(), Created: now, Updated: now}
	if !residency {
		in.SecondaryLocation = r.PairedRegion
	}
	dir = model.DirEntry{Name: in.Name, Primary: r.Name, Secondary: in.SecondaryLocation, Epoch: 1,
		DREnabled: !residency && in.SecondaryLocation != "", Role: model.RolePrimary}
	return in, dir, nil
}

// placement checks where a new instance may live: a catalog region, this
// node's, allowing data residency if asked.
func (m *Manager) placement(loc string, residency bool) (regions.Region, error) {
	r, err := m.location(loc)
	if err != nil {
		return r, err
	}
	if err := m.cat.CheckDataResidency(r.Name, residency); err != nil {
		return r, errorf(ErrInvalid, "%v", err)
	}
	if !m.hosts(r.Name) {
		return r, errorf(ErrWrongRegion, "this node serves region %s; create an instance in %s through a node of that region", m.region, r.Name)
	}
	return r, nil
}

func (m *Manager) location(loc string) (regions.Region, error) {
	if loc == "" {
		return regions.Region{}, errorf(ErrInvalid, "location is required")
	}
	r, err := m.cat.Lookup(loc)
	if err != nil {
		return regions.Region{}, errorf(ErrInvalid, "location %q is not a region of this deployment (GET /opendps/regions lists them)", clip(loc))
	}
	return r, nil
}

func ownerPolicy() model.AccessPolicy {
	rights, _ := ParseRights(joinRights(model.AllRights))
	return model.AccessPolicy{KeyName: model.OwnerPolicy, PrimaryKey: NewKey(), SecondaryKey: NewKey(), Rights: rights}
}

func nonEmpty(tags map[string]string) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	return maps.Clone(tags)
}

// insert writes the instance with a fresh random ID scope, retrying on the
// rare collision; the store's transaction makes the final check atomic.
func (m *Manager) insert(ctx context.Context, dir model.DirEntry, in *model.Instance) error {
	for range maxScopeAttempts {
		scope := newIDScope()
		if taken, err := m.scopeTaken(ctx, scope); err != nil {
			return err
		} else if taken {
			continue
		}
		dir.IDScope, in.IDScope = scope, scope
		err := m.st.CreateInstance(ctx, dir, in)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrExists) {
			return err
		}
		if _, derr := m.st.Dir(ctx, in.Name); derr == nil {
			return errorf(ErrExists, "the name %q is already taken", in.Name)
		}
	}
	return errors.New("instance: no free ID scope found")
}

func (m *Manager) scopeTaken(ctx context.Context, scope string) (bool, error) {
	taken, err := m.st.ScopeTaken(ctx, scope)
	if err != nil || taken || m.dir == nil {
		return taken, err
	}
	return m.dir.ScopeTaken(ctx, scope)
}

// writeNewHubs links the hubs of a just-created instance; on failure the
// instance is deleted again, so a create is all or nothing.
func (m *Manager) writeNewHubs(ctx context.Context, name string, hubs []model.LinkedHub) error {
	if len(hubs) == 0 {
		return nil
	}
	err := m.st.Update(ctx, name, func(tx *store.Tx) error {
		for _, h := range hubs {
			if err := tx.Put(store.Key(name, store.KindHub, h.Name), h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if derr := m.st.DeleteInstance(context.WithoutCancel(ctx), name); derr != nil {
			m.log.Error("cannot undo a partial instance create", "instance", name, "err", derr)
		}
	}
	return err
}

// Update applies spec to an existing instance (PUT semantics; see Spec).
// Re-applying the same content writes nothing and keeps the etag.
func (m *Manager) Update(ctx context.Context, spec Spec) (*View, error) {
	cur, err := m.Lookup(ctx, spec.Name)
	if err != nil {
		return nil, err
	}
	name := cur.Name
	var desired []model.LinkedHub
	if spec.Hubs != nil {
		old, err := m.listHubs(ctx, name)
		if err != nil {
			return nil, err
		}
		if desired, err = m.buildHubs(ctx, spec.Hubs, cur.Location, old); err != nil {
			return nil, err
		}
	}
	out, err := m.mutate(ctx, name, func(tx *store.Tx, in *model.Instance) (bool, error) {
		if err := checkIfMatch("instance "+name, spec.IfMatch, in.Etag); err != nil {
			return false, err
		}
		before := *in
		if err := m.applySpec(in, spec); err != nil {
			return false, err
		}
		changed := !sameConfig(&before, in)
		if spec.Hubs == nil {
			return changed, nil
		}
		hubsChanged, err := m.replaceHubs(ctx, tx, name, desired)
		return changed || hubsChanged, err
	})
	if err != nil {
		return nil, err
	}
	return m.view(ctx, out)
}

// applySpec changes in as spec asks, refusing changes to immutable fields.
func (m *Manager) applySpec(in *model.Instance, spec Spec) error {
	if spec.Location != "" {
		if r, err := m.location(spec.Location); err != nil || r.Name != in.Location {
			return errorf(ErrInvalid, "location cannot change: instance %s is in %s", in.Name, in.Location)
		}
	}
	if spec.EnableDataResidency != nil && *spec.EnableDataResidency != in.EnableDataResidency {
		return errorf(ErrInvalid, "enableDataResidency can only be set when the instance is created (instance %s has %t)", in.Name, in.EnableDataResidency)
	}
	alloc, err := canonicalAllocation(spec.AllocationPolicy)
	if err != nil {
		return err
	}
	if alloc != "" {
		in.AllocationPolicy = alloc
	}
	if spec.Tags != nil {
		if err := validateTags(spec.Tags); err != nil {
			return err
		}
		in.Tags = nonEmpty(spec.Tags)
	}
	if len(spec.Policies) > 0 {
		p, err := buildPolicies(spec.Policies, in.AuthorizationPolicies)
		if err != nil {
			return err
		}
		in.AuthorizationPolicies = p
	}
	return nil
}

// sameConfig compares what an update may change.
func sameConfig(a, b *model.Instance) bool {
	return a.AllocationPolicy == b.AllocationPolicy && maps.Equal(a.Tags, b.Tags) &&
		slices.Equal(a.AuthorizationPolicies, b.AuthorizationPolicies)
}

// UpdateTags replaces the tags of an instance (ARM PATCH); nil keeps them.
func (m *Manager) UpdateTags(ctx context.Context, name string, tags map[string]string) (*View, error) {
	return m.Update(ctx, Spec{Name: name, Tags: tags})
}

// Delete removes an instance and every record under it. A non-empty
// ifMatch must match the instance's etag (checked just before the delete).
func (m *Manager) Delete(ctx context.Context, name, ifMatch string) error {
	name, err := resolve(name)
	if err != nil {
		return err
	}
	if ifMatch != "" {
		in, err := m.st.Instance(ctx, name)
		if err != nil {
			return mapStoreErr(err, "instance %q", name)
		}
		if err := checkIfMatch("instance "+name, ifMatch, in.Etag); err != nil {
			return err
		}
	}
	if err := m.st.DeleteInstance(ctx, name); err != nil {
		return mapStoreErr(err, "instance %q", name)
	}
	m.log.Info("instance deleted", "instance", name)
	return nil
}

// mutate runs fn on the instance configuration in a fenced transaction and
// stores it with a new etag when fn reports a change. fn may run several
// times. It returns the configuration as committed.
func (m *Manager) mutate(ctx context.Context, name string, fn func(*store.Tx, *model.Instance) (bool, error)) (*model.Instance, error) {
	name, err := resolve(name)
	if err != nil {
		return nil, err
	}
	var out *model.Instance
	err = m.st.Update(ctx, name, func(tx *store.Tx) error {
		in := new(model.Instance)
		ok, err := tx.Get(store.ConfKey(name), in)
		if err != nil {
			return err
		}
		if !ok {
			return errorf(ErrNotFound, "instance %q not found", name)
		}
		changed, err := fn(tx, in)
		if err != nil {
			return err
		}
		if changed {
			in.Etag, in.Updated = newEtag(), m.now().UTC()
			if err := tx.Put(store.ConfKey(name), in); err != nil {
				return err
			}
		}
		out = in
		return nil
	})
	if err != nil {
		return nil, mapStoreErr(err, "instance %q", name)
	}
	return out, nil
}
