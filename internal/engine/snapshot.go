package engine

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// snapshot is what the engine reads of an instance on every registration,
// cached: configuration, linked hubs, enrollment groups, CA certificates.
// Individual enrollments and registrations are read per request.
type snapshot struct {
	name     string
	instance *model.Instance
	hubs     []model.LinkedHub
	groups   []*model.EnrollmentGroup
	cas      map[string]caEntry // lower-cased name
	loaded   time.Time
}

type caEntry struct {
	cert     *x509.Certificate
	verified bool
}

// snapshots caches snapshots by instance name and ID scopes by value. A
// watch on the keyspace drops entries when their keys change, so a
// disabled group or an unlinked hub takes effect within the watch latency;
// maxAge bounds staleness if the watch is broken.
type snapshots struct {
	st     *store.Store
	log    *slog.Logger
	maxAge time.Duration

	mu     sync.Mutex
	byName map[string]*snapshot // guarded by mu
	scopes map[string]string    // lower-cased scope -> instance; guarded by mu
}

func newSnapshots(st *store.Store, log *slog.Logger, maxAge time.Duration) *snapshots {
	return &snapshots{st: st, log: log, maxAge: maxAge, byName: map[string]*snapshot{}, scopes: map[string]string{}}
}

// errUnknownScope is returned for an ID scope no instance has.
var errUnknownScope = errors.New("engine: unknown ID scope")

// resolve returns the snapshot of the instance of idScope.
func (c *snapshots) resolve(ctx context.Context, idScope string) (*snapshot, error) {
	scope := strings.ToLower(idScope)
	c.mu.Lock()
	name, ok := c.scopes[scope]
	c.mu.Unlock()
	if !ok {
		n, err := c.st.ResolveScope(ctx, scope)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errUnknownScope
		}
		if err != nil {
			return nil, err
		}
		name = n
		c.mu.Lock()
		c.scopes[scope] = name
		c.mu.Unlock()
	}
	return c.get(ctx, name)
}

func (c *snapshots) get(ctx context.Context, name string) (*snapshot, error) {
	c.mu.Lock()
	s, ok := c.byName[name]
	c.mu.Unlock()
	if ok && time.Since(s.loaded) < c.maxAge {
		return s, nil
	}
	s, err := c.load(ctx, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.byName[name] = s
	c.mu.Unlock()
	return s, nil
}

func (c *snapshots) load(ctx context.Context, name string) (*snapshot, error) {
	in, err := c.st.Instance(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownScope
	}
	if err != nil {
		return nil, err
	}
	s := &snapshot{name: name, instance: in, cas: map[string]caEntry{}, loaded: time.Now()}
	if err := listAll(ctx, c.st, store.KindPrefix(name, store.KindHub), func(b []byte) error {
		var h model.LinkedHub
		if err := json.Unmarshal(b, &h); err != nil {
			return err
		}
		s.hubs = append(s.hubs, h)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := listAll(ctx, c.st, store.KindPrefix(name, store.KindGroup), func(b []byte) error {
		var g model.EnrollmentGroup
		if err := json.Unmarshal(b, &g); err != nil {
			return err
		}
		s.groups = append(s.groups, &g)
		return nil
	}); err != nil {
		return nil, err
	}
	err = listAll(ctx, c.st, store.KindPrefix(name, store.KindCertificate), func(b []byte) error {
		var mc model.Certificate
		if err := json.Unmarshal(b, &mc); err != nil {
			return err
		}
		der, err := base64.StdEncoding.DecodeString(mc.Certificate)
		if err != nil {
			return nil // unreadable certificates anchor nothing
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		s.cas[strings.ToLower(mc.Name)] = caEntry{cert: cert, verified: mc.IsVerified}
		return nil
	})
	return s, err
}

// listAll decodes every record under prefix with fn (store.Each), naming
// the prefix in a decoding error.
func listAll(ctx context.Context, st *store.Store, prefix string, fn func([]byte) error) error {
	return st.Each(ctx, prefix, func(b []byte) error {
		if err := fn(b); err != nil {
			return fmt.Errorf("engine: decoding %s: %w", prefix, err)
		}
		return nil
	})
}

// watch drops cached entries whose keys change, until ctx ends.
func (c *snapshots) watch(ctx context.Context) {
	for ctx.Err() == nil {
		wc := c.st.Client().Watch(clientv3.WithRequireLeader(ctx), "/opendps/", clientv3.WithPrefix(), clientv3.WithPrevKV())
		for resp := range wc {
			if err := resp.Err(); err != nil {
				c.log.Warn("snapshot watch failed", "err", err)
				break
			}
			for _, ev := range resp.Events {
				c.invalidate(string(ev.Kv.Key))
			}
		}
		c.flush() // anything may have changed while the watch was down
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// invalidate drops what key belongs to. Registration and enrollment
// records are not cached and are ignored.
func (c *snapshots) invalidate(key string) {
	rest, ok := strings.CutPrefix(key, "/opendps/")
	if !ok {
		return
	}
	switch {
	case strings.HasPrefix(rest, "scope/"), strings.HasPrefix(rest, "dir/"):
		c.flush()
	case strings.HasPrefix(rest, "i/"):
		name, sub, _ := strings.Cut(strings.TrimPrefix(rest, "i/"), "/")
		if sub == "conf" || strings.HasPrefix(sub, store.KindHub+"/") || strings.HasPrefix(sub, store.KindGroup+"/") || strings.HasPrefix(sub, store.KindCertificate+"/") {
			c.mu.Lock()
			delete(c.byName, name)
			c.mu.Unlock()
		}
	}
}

func (c *snapshots) flush() {
	c.mu.Lock()
	clear(c.byName)
	clear(c.scopes)
	c.mu.Unlock()
}

// enrollments adapts a snapshot to attest.Enrollments for one request.
type enrollments struct {
	st   *store.Store
	snap *snapshot
}

func (e enrollments) Individual(ctx context.Context, regID string) (*model.IndividualEnrollment, error) {
	var en model.IndividualEnrollment
	rev, _, err := e.st.GetRev(ctx, store.Key(e.snap.name, store.KindEnrollment, regID), &en, true)
	if err != nil || rev == 0 {
		return nil, err
	}
	return &en, nil
}

func (e enrollments) Groups(context.Context) ([]*model.EnrollmentGroup, error) {
	return e.snap.groups, nil
}

func (e enrollments) CACertificate(_ context.Context, name string) (*x509.Certificate, bool, error) {
	ca, ok := e.snap.cas[strings.ToLower(name)]
	if !ok {
		return nil, false, nil
	}
	return ca.cert, ca.verified, nil
}
