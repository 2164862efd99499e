// Package instance is the control-plane logic of opendps: creating, reading,
// updating and deleting DPS instances, their shared access policies, their
// linked IoT hubs and their CA certificates (spec/dps-protocol.md §8, §6.2;
// DESIGN §4, §8). It knows nothing of HTTP: package controlapi renders it in
// the ARM shape.
//
// Every write goes through store.Update, a fenced transaction on the
// instance, so a node that is not the instance's writable primary cannot
// change it. Etags live in the records and change at every write.
//
// Instance names are case-insensitive; they are stored and shown in lower
// case, which is also how they appear in host names ({name}.{domain}).
//
// Example:
//
//	m, err := instance.New(instance.Config{Store: st, Catalog: regions.Builtin(),
//		Region: "westeurope", ServiceDomain: "localhost:8443", DeviceHost: "localhost:8443"})
//	if err != nil { ... }
//	v, err := m.Create(ctx, instance.Spec{Name: "dps1", Location: "westeurope"})
//	// v.Instance.IDScope is "0ne" + 8 hex digits; v.Instance.Policy("provisioningserviceowner") has keys.
//
// A Manager is safe for concurrent use.
package instance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// Kinds of errors of the manager. They come wrapped in *Error, whose Msg is
// safe to show to a client; test them with errors.Is. Storage errors
// (store.ErrFenced, store.ErrUnavailable, store.ErrConflict) are passed
// through wrapped, not as *Error.
var (
	// ErrInvalid: the request is malformed or not allowed (HTTP 400).
	ErrInvalid = errors.New("instance: invalid request")
	// ErrNotFound: the instance, policy, hub or certificate does not exist (404).
	ErrNotFound = errors.New("instance: not found")
	// ErrExists: the name is taken (409).
	ErrExists = errors.New("instance: already exists")
	// ErrPrecondition: an If-Match / If-None-Match condition failed (412).
	ErrPrecondition = errors.New("instance: precondition failed")
	// ErrLimit: a quota (25 CA certificates, 50 linked hubs) is reached (400).
	ErrLimit = errors.New("instance: limit reached")
	// ErrWrongRegion: the instance's location is not this node's region;
	// create it through a node of that region (400).
	ErrWrongRegion = errors.New("instance: wrong region")
	// ErrHubCheck: a linked hub failed its link-time check (400).
	ErrHubCheck = errors.New("instance: linked hub check failed")
)

// Error is an error a client may see.
type Error struct {
	Kind error  // one of the Err* sentinels
	Msg  string // safe to show, without the package prefix
}

func (e *Error) Error() string { return "instance: " + e.Msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Message returns the client-safe message of err: Msg of an *Error, or
// "" for other errors (whose text is internal).
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return ""
}

// Defaults of the ARM scope of an instance created without one.
const (
	DefaultSubscription  = "00000000-0000-0000-0000-000000000000"
	DefaultResourceGroup = "default"
)

// Wire values of the resource (§8.3).
const (
	StateActive = "Active"
	// MaxHubs and MaxCertificates are the DPS limits (§9).
	MaxHubs         = 50
	MaxCertificates = 25
	// hubCheckTimeout bounds the link-time check of one hub.
	hubCheckTimeout = 10 * time.Second
)

// Config configures a Manager.
type Config struct {
	// Store holds the state. Required.
	Store *store.Store
	// Catalog is the region catalog. Required.
	Catalog *regions.Catalog
	// Region is this node's region: instances are created with it as their
	// primary, and a location elsewhere is refused (ErrWrongRegion). Empty
	// means "the instance's location" (single-region tests).
	Region string
	// HostedRegions are further catalog regions whose instances this
	// region's cluster hosts ("*": every region), for deployments that do
	// not run a cluster per location (a single-region dev deployment).
	HostedRegions []string
	// ServiceDomain is the DNS suffix of the service API, with ":port" when
	// that port is not 443, e.g. "azure-devices-provisioning.net" or
	// "localhost:8443": an instance's serviceOperationsHostName is
	// "{name}.{ServiceDomain}". Empty gives "{name}".
	ServiceDomain string
	// DeviceHost is the device endpoint, host[:port], shown as
	// deviceProvisioningHostName (e.g. "global.azure-devices-provisioning.net").
	DeviceHost string
	// HubChecker checks a linked hub when it is linked. Nil means
	// RegistryChecker{} (the real registry API, trusting the system roots).
	HubChecker HubChecker
	// Directory, when set, is asked whether a name or ID scope is taken
	// elsewhere in the deployment (other regions); nil checks this region's
	// store only.
	Directory Directory
	// Zones, when set, reports the availability-zone state of the region
	// that hosts the instances; views carry it (zone redundancy needs no
	// action from tenants: every instance of a zone-redundant region has
	// it). Nil shows instances as not zone-redundant.
	Zones ZoneReporter
	// Log receives diagnostics; nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ZoneReporter reports whether the region is zone-redundant and the zones
// of its voting members. It must not block (internal/region caches it) and
// be safe for concurrent use.
type ZoneReporter interface {
	ZoneRedundancy() (redundant bool, zones []string, reason string)
}

// Directory answers uniqueness questions across the regions of a
// deployment. Implementations must be safe for concurrent use; an error
// makes the create fail (it is better to refuse than to duplicate a name).
type Directory interface {
	NameTaken(ctx context.Context, name string) (bool, error)
	ScopeTaken(ctx context.Context, idScope string) (bool, error)
}

// Manager runs control-plane operations. Create it with New.
type Manager struct {
	st            *store.Store
	cat           *regions.Catalog
	region        string
	hosted        map[string]bool // normalized region names; "*" = all
	serviceDomain string
	deviceHost    string
	hubs          HubChecker
	dir           Directory
	zones         ZoneReporter
	log           *slog.Logger
	now           func() time.Time
}

// New validates cfg and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("instance: config: Store is required")
	}
	if cfg.Catalog == nil {
		return nil, errors.New("instance: config: Catalog is required")
	}
	m := &Manager{st: cfg.Store, cat: cfg.Catalog, serviceDomain: cfg.ServiceDomain,
		deviceHost: cfg.DeviceHost, hubs: cfg.HubChecker, dir: cfg.Directory, zones: cfg.Zones, log: cfg.Log, now: cfg.Now}
	if cfg.Region != "" {
		r, err := cfg.Catalog.Lookup(cfg.Region)
		if err != nil {
			return nil, fmt.Errorf("instance: config: Region: %w", err)
		}
		m.region = r.Name
	}
	m.hosted = map[string]bool{}
	for _, h := range cfg.HostedRegions {
		m.hosted[regions.Normalize(h)] = true
	}
	if m.hubs == nil {
		m.hubs = RegistryChecker{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// hosts reports whether instances located in region live in this cluster.
func (m *Manager) hosts(region string) bool {
	return m.region == "" || region == m.region || m.hosted["*"] || m.hosted[region]
}

// Region returns this node's region ("" when not configured).
func (m *Manager) Region() string { return m.region }

// View is an instance as the control plane shows it.
type View struct {
	Instance model.Instance // policies with their keys: strip them before showing
	Dir      model.DirEntry
	Hubs     []model.LinkedHub // with connection strings (keys included)
	// ServiceHostName is "{name}.{ServiceDomain}"; DeviceHostName is
	// Config.DeviceHost.
	ServiceHostName string
	DeviceHostName  string
	// ZoneRedundant and Zones: the instance's region is zone-redundant,
	// with voting members in Zones (Config.Zones).
	ZoneRedundant bool
	Zones         []string
}

// Subscription returns the instance's subscription (the default when unset).
func (v *View) Subscription() string {
	return orDefault(v.Instance.SubscriptionID, DefaultSubscription)
}

// ResourceGroup returns the instance's resource group (the default when unset).
func (v *View) ResourceGroup() string {
	return orDefault(v.Instance.ResourceGroup, DefaultResourceGroup)
}

// InScope reports whether the instance lives in subscription sub and, when
// rg is not empty, resource group rg (case-insensitive).
func (v *View) InScope(sub, rg string) bool {
	return InScope(&v.Instance, sub, rg)
}

// InScope reports whether in lives in subscription sub and, when rg is not
// empty, resource group rg (case-insensitive; unset values are the defaults).
func InScope(in *model.Instance, sub, rg string) bool {
	if !strings.EqualFold(orDefault(in.SubscriptionID, DefaultSubscription), sub) {
		return false
	}
	return rg == "" || strings.EqualFold(orDefault(in.ResourceGroup, DefaultResourceGroup), rg)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// CanonicalName returns the stored form of an instance name (lower case).
func CanonicalName(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// resolve returns the stored form of an existing instance's name. A name
// that could not have been created is not found: this keeps names taken
// from URL paths (which may hold '/') from aliasing other keys.
func resolve(name string) (string, error) {
	if ValidateName(strings.TrimSpace(name)) != nil {
		return "", errorf(ErrNotFound, "instance %q not found", clip(name))
	}
	return CanonicalName(name), nil
}

// Lookup returns the configuration of instance name.
func (m *Manager) Lookup(ctx context.Context, name string) (*model.Instance, error) {
	name, err := resolve(name)
	if err != nil {
		return nil, err
	}
	in, err := m.st.Instance(ctx, name)
	return in, mapStoreErr(err, "instance %q", name)
}

// Get returns the view of instance name.
func (m *Manager) Get(ctx context.Context, name string) (*View, error) {
	name, err := resolve(name)
	if err != nil {
		return nil, err
	}
	in, err := m.st.Instance(ctx, name)
	if err != nil {
		return nil, mapStoreErr(err, "instance %q", name)
	}
	return m.view(ctx, in)
}

func (m *Manager) view(ctx context.Context, in *model.Instance) (*View, error) {
	dir, err := m.st.Dir(ctx, in.Name)
	if err != nil {
		return nil, mapStoreErr(err, "instance %q", in.Name)
	}
	hubs, err := m.listHubs(ctx, in.Name)
	if err != nil {
		return nil, err
	}
	v := &View{Instance: *in, Dir: *dir, Hubs: hubs,
		ServiceHostName: m.ServiceHostName(in.Name), DeviceHostName: m.deviceHost}
	if m.zones != nil {
		v.ZoneRedundant, v.Zones, _ = m.zones.ZoneRedundancy()
	}
	return v, nil
}

// ServiceHostName returns the service API host[:port] of instance name.
func (m *Manager) ServiceHostName(name string) string {
	if m.serviceDomain == "" {
		return CanonicalName(name)
	}
	return CanonicalName(name) + "." + m.serviceDomain
}

// List returns the views of the instances of subscription sub and, when rg
// is not empty, resource group rg, in name order. Replicas of instances
// whose primary is another region are included (their Dir.Role says so).
func (m *Manager) List(ctx context.Context, sub, rg string) ([]*View, error) {
	dirs, err := m.st.ListDirs(ctx)
	if err != nil {
		return nil, err
	}
	out := []*View{}
	for _, d := range dirs {
		in, err := m.st.Instance(ctx, d.Name)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		if !InScope(in, sub, rg) {
			continue
		}
		v, err := m.view(ctx, in)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Stats counts an instance's records.
type Stats struct {
	Enrollments   int64 `json:"enrollments"`
	Groups        int64 `json:"enrollmentGroups"`
	Registrations int64 `json:"registrations"`
}

// Stats returns the record counts of instance name (one count per kind,
// not a consistent snapshot).
func (m *Manager) Stats(ctx context.Context, name string) (Stats, error) {
	name, err := resolve(name)
	if err != nil {
		return Stats{}, err
	}
	if _, err := m.st.Dir(ctx, name); err != nil {
		return Stats{}, mapStoreErr(err, "instance %q", name)
	}
	var s Stats
	for _, c := range []struct {
		kind string
		dst  *int64
	}{{store.KindEnrollment, &s.Enrollments}, {store.KindGroup, &s.Groups}, {store.KindRegistration, &s.Registrations}} {
		n, err := m.st.Count(ctx, store.KindPrefix(name, c.kind))
		if err != nil {
			return Stats{}, err
		}
		*c.dst = n
	}
	return s, nil
}

// NameAvailability answers checkProvisioningServiceNameAvailability.
type NameAvailability struct {
	NameAvailable bool   `json:"nameAvailable"`
	Reason        string `json:"reason,omitempty"` // "Invalid" or "AlreadyExists"
	Message       string `json:"message,omitempty"`
}

// CheckName reports whether name may be used for a new instance.
func (m *Manager) CheckName(ctx context.Context, name string) (NameAvailability, error) {
	if err := ValidateName(name); err != nil {
		return NameAvailability{Reason: "Invalid", Message: Message(err)}, nil
	}
	taken, err := m.nameTaken(ctx, CanonicalName(name))
	if err != nil {
		return NameAvailability{}, err
	}
	if taken {
		return NameAvailability{Reason: "AlreadyExists", Message: fmt.Sprintf("The name %q is already taken.", name)}, nil
	}
	return NameAvailability{NameAvailable: true}, nil
}

func (m *Manager) nameTaken(ctx context.Context, name string) (bool, error) {
	_, err := m.st.Dir(ctx, name)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if m.dir != nil {
		return m.dir.NameTaken(ctx, name)
	}
	return false, nil
}

// mapStoreErr turns store.ErrNotFound into ErrNotFound naming what is
// missing; other errors pass through.
func mapStoreErr(err error, what string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return errorf(ErrNotFound, "%s not found", fmt.Sprintf(what, args...))
	}
	return err
}
