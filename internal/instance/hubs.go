package instance

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/internal/store"
)

// Allocation weight bounds of a linked hub (ARM).
const (
	MinAllocationWeight     = 1
	MaxAllocationWeight     = 1000
	DefaultAllocationWeight = 1
	// maskedKey replaces hub keys in connection strings shown to clients.
	maskedKey = "****"
)

// HubChecker proves, when a hub is linked, that it answers and accepts
// the connection string. It is called without locks held, possibly
// concurrently; an error says why the hub is not usable.
type HubChecker interface {
	Check(ctx context.Context, connStr string) error
}

// HubCheckFunc adapts a function to HubChecker.
type HubCheckFunc func(ctx context.Context, connStr string) error

// Check calls f.
func (f HubCheckFunc) Check(ctx context.Context, connStr string) error { return f(ctx, connStr) }

// RegistryChecker checks a hub through its registry REST API with package
// hub (hub.Client.Check). Options are passed to hub.New, e.g.
// hub.WithTLSConfig for a local CA.
type RegistryChecker struct {
	Options []hub.Option
}

// Check implements HubChecker.
func (c RegistryChecker) Check(ctx context.Context, connStr string) error {
	cl, err := hub.New(connStr, c.Options...)
	if err != nil {
		return err
	}
	return cl.Check(ctx)
}

var _ HubChecker = RegistryChecker{}

// HubSpec is a linked hub as a client gives it (ARM IotHubDefinitionDescription).
type HubSpec struct {
	// ConnectionString is the hub's service connection string; its HostName
	// (with a port, if any) is the hub's name.
	ConnectionString string
	// Location defaults to the instance's location.
	Location string
	// AllocationWeight is 1..1000; nil means 1.
	AllocationWeight *int
	// ApplyAllocationPolicy: nil means true.
	ApplyAllocationPolicy *bool
}

// MaskConnectionString replaces the key of a connection string with "****",
// for showing it. Strings that do not parse are masked entirely.
func MaskConnectionString(cs string) string {
	p, err := sas.ParseConnectionString(cs)
	if err != nil {
		return maskedKey
	}
	p.SharedAccessKey = maskedKey
	return p.String()
}

// maskedHost returns the HostName of a connection string whose key is
// masked (all '*') or missing, and whether it is one.
func maskedHost(cs string) (string, bool) {
	host, key := "", ""
	for _, part := range strings.Split(cs, ";") {
		k, v, _ := strings.Cut(part, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "hostname":
			host = v
		case "sharedaccesskey":
			key = v
		}
	}
	return host, host != "" && strings.Trim(key, "*") == ""
}

// validHost reports whether s is a DNS name, optionally with ":port".
func validHost(s string) bool {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return false
		}
		host = h
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

// hubFromSpec validates one hub. old holds the current hubs by lower-case
// name, for masked connection strings.
func (m *Manager) hubFromSpec(s HubSpec, defLoc string, old map[string]model.LinkedHub) (model.LinkedHub, error) {
	cs := strings.TrimSpace(s.ConnectionString)
	if host, masked := maskedHost(cs); masked {
		prev, ok := old[strings.ToLower(host)]
		if !ok {
			return model.LinkedHub{}, errorf(ErrInvalid, "the connection string of hub %s has no key; give the full connection string", clip(host))
		}
		cs = prev.ConnectionString
	}
	p, err := sas.ParseConnectionString(cs)
	if err != nil {
		return model.LinkedHub{}, errorf(ErrInvalid, "hub connection string: %s", strings.TrimPrefix(err.Error(), "sas: "))
	}
	if p.DeviceID != "" {
		return model.LinkedHub{}, errorf(ErrInvalid, "hub %s: a device connection string cannot be linked; use a policy such as iothubowner", p.HostName)
	}
	if !validHost(p.HostName) {
		return model.LinkedHub{}, errorf(ErrInvalid, "hub connection string: HostName %q is not a host name (with an optional :port)", clip(p.HostName))
	}
	h := model.LinkedHub{Name: p.HostName, ConnectionString: cs, Location: defLoc,
		AllocationWeight: DefaultAllocationWeight, ApplyAllocationPolicy: true}
	if w := s.AllocationWeight; w != nil {
		if *w < MinAllocationWeight || *w > MaxAllocationWeight {
			return h, errorf(ErrInvalid, "hub %s: allocationWeight must be %d to %d, not %d", h.Name, MinAllocationWeight, MaxAllocationWeight, *w)
		}
		h.AllocationWeight = *w
	}
	if s.ApplyAllocationPolicy != nil {
		h.ApplyAllocationPolicy = *s.ApplyAllocationPolicy
	}
	if s.Location != "" {
		r, err := m.location(s.Location)
		if err != nil {
			return h, errorf(ErrInvalid, "hub %s: %s", h.Name, Message(err))
		}
		h.Location = r.Name
	}
	return h, nil
}

// buildHubs validates a whole set of hubs and checks, with the HubChecker,
// each one that is new or whose connection string changed.
func (m *Manager) buildHubs(ctx context.Context, specs []HubSpec, defLoc string, old []model.LinkedHub) ([]model.LinkedHub, error) {
	if len(specs) > MaxHubs {
		return nil, errorf(ErrLimit, "at most %d hubs can be linked to an instance", MaxHubs)
	}
	byName := hubMap(old)
	out := make([]model.LinkedHub, 0, len(specs))
	seen := map[string]bool{}
	for _, s := range specs {
		h, err := m.hubFromSpec(s, defLoc, byName)
		if err != nil {
			return nil, err
		}
		k := strings.ToLower(h.Name)
		if seen[k] {
			return nil, errorf(ErrInvalid, "hub %s is listed twice", h.Name)
		}
		seen[k] = true
		out = append(out, h)
	}
	for _, h := range out {
		if prev, ok := byName[strings.ToLower(h.Name)]; ok && prev.ConnectionString == h.ConnectionString {
			continue
		}
		if err := m.checkHub(ctx, h); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func hubMap(hs []model.LinkedHub) map[string]model.LinkedHub {
	out := make(map[string]model.LinkedHub, len(hs))
	for _, h := range hs {
		out[strings.ToLower(h.Name)] = h
	}
	return out
}

func (m *Manager) checkHub(ctx context.Context, h model.LinkedHub) error {
	cctx, cancel := context.WithTimeout(ctx, hubCheckTimeout)
	defer cancel()
	if err := m.hubs.Check(cctx, h.ConnectionString); err != nil {
		m.log.Info("linked hub check failed", "hub", h.Name, "err", err)
		return errorf(ErrHubCheck, "IoT hub %s failed the link-time check (is it reachable, and is the key right?): %v", h.Name, err)
	}
	return nil
}

// listHubs returns the linked hubs of instance name, in name order.
func (m *Manager) listHubs(ctx context.Context, name string) ([]model.LinkedHub, error) {
	out := []model.LinkedHub{}
	prefix := store.KindPrefix(name, store.KindHub)
	after := ""
	for {
		p, err := m.st.List(ctx, prefix, after, 100)
		if err != nil {
			return nil, err
		}
		for _, v := range p.Values {
			var h model.LinkedHub
			if err := json.Unmarshal(v, &h); err != nil {
				return nil, err
			}
			out = append(out, h)
		}
		if p.Next == "" {
			return out, nil
		}
		after = p.Next
	}
}

// replaceHubs makes the linked hubs of name exactly desired, inside tx
// (whose instance configuration was read first, so a concurrent hub change,
// which also rewrites it, makes the commit retry). It reports a change.
func (m *Manager) replaceHubs(ctx context.Context, tx *store.Tx, name string, desired []model.LinkedHub) (bool, error) {
	cur, err := m.listHubs(ctx, name)
	if err != nil {
		return false, err
	}
	want := hubMap(desired)
	changed := false
	for _, h := range cur {
		if _, ok := want[strings.ToLower(h.Name)]; !ok {
			tx.Delete(store.Key(name, store.KindHub, h.Name))
			changed = true
		}
	}
	have := hubMap(cur)
	for _, h := range desired {
		if prev, ok := have[strings.ToLower(h.Name)]; ok && prev == h {
			continue
		}
		if err := tx.Put(store.Key(name, store.KindHub, h.Name), h); err != nil {
			return false, err
		}
		changed = true
	}
	return changed, nil
}

// Hubs returns the linked hubs of an instance (connection strings with keys).
func (m *Manager) Hubs(ctx context.Context, name string) ([]model.LinkedHub, error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	return m.listHubs(ctx, in.Name)
}

// AddHub links a hub, or updates the hub of the same host name; the hub is
// checked with the HubChecker unless its connection string is unchanged.
// created says whether the hub is new.
func (m *Manager) AddHub(ctx context.Context, name string, s HubSpec) (h model.LinkedHub, created bool, err error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return h, false, err
	}
	old, err := m.listHubs(ctx, in.Name)
	if err != nil {
		return h, false, err
	}
	hubs, err := m.buildHubs(ctx, []HubSpec{s}, in.Location, old)
	if err != nil {
		return h, false, err
	}
	h = hubs[0]
	_, err = m.mutate(ctx, in.Name, func(tx *store.Tx, _ *model.Instance) (bool, error) {
		var prev model.LinkedHub
		key := store.Key(in.Name, store.KindHub, h.Name)
		ok, err := tx.Get(key, &prev)
		if err != nil {
			return false, err
		}
		created = !ok
		if ok && prev == h {
			return false, nil
		}
		if !ok {
			if n, err := m.st.Count(ctx, store.KindPrefix(in.Name, store.KindHub)); err != nil {
				return false, err
			} else if n >= MaxHubs {
				return false, errorf(ErrLimit, "at most %d hubs can be linked to an instance", MaxHubs)
			}
		}
		return true, tx.Put(key, h)
	})
	return h, created, err
}

// RemoveHub unlinks the hub of host name hostName (case-insensitive).
func (m *Manager) RemoveHub(ctx context.Context, name, hostName string) error {
	_, err := m.mutate(ctx, name, func(tx *store.Tx, in *model.Instance) (bool, error) {
		key := store.Key(in.Name, store.KindHub, hostName)
		var prev model.LinkedHub
		ok, err := tx.Get(key, &prev)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, errorf(ErrNotFound, "hub %q is not linked to instance %s", clip(hostName), in.Name)
		}
		tx.Delete(key)
		return true, nil
	})
	return err
}
