package forward

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// localDirs resolves ID scopes and instance names to the directory entries
// of this region, caching answers (and their absence) for ttl: a request
// costs no etcd read in the common case. A stale entry is harmless: a
// write in a region that is no longer primary is fenced by the store
// (503), and a forwarded request refused by an old primary is retried by
// the device. It is safe for concurrent use.
type localDirs struct {
	st  *store.Store
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]localDir // "s:"+scope or "i:"+name; guarded by mu
}

type localDir struct {
	dir   *model.DirEntry // nil: unknown here
	until time.Time
}

func newLocalDirs(st *store.Store, ttl time.Duration) *localDirs {
	return &localDirs{st: st, ttl: ttl, now: time.Now, cache: map[string]localDir{}}
}

// byScope returns the directory entry of the instance of idScope, or nil
// when the scope is unknown in this region.
func (c *localDirs) byScope(ctx context.Context, idScope string) (*model.DirEntry, error) {
	scope := strings.ToLower(idScope)
	return c.lookup(ctx, "s:"+scope, func() (*model.DirEntry, error) {
		name, err := c.st.ResolveScope(ctx, scope)
		if err != nil {
			return nil, err
		}
		return c.st.Dir(ctx, name)
	})
}

// byName returns the directory entry of instance, or nil when unknown here.
func (c *localDirs) byName(ctx context.Context, name string) (*model.DirEntry, error) {
	name = strings.ToLower(name)
	return c.lookup(ctx, "i:"+name, func() (*model.DirEntry, error) { return c.st.Dir(ctx, name) })
}

func (c *localDirs) lookup(ctx context.Context, key string, read func() (*model.DirEntry, error)) (*model.DirEntry, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.cache[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.dir, nil
	}
	d, err := read()
	if errors.Is(err, store.ErrNotFound) {
		d, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.cache) >= maxCached {
			clear(c.cache)
		}
		c.cache[key] = localDir{dir: d, until: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return d, nil
}

// servesHere reports whether d's instance is answered by this region:
// role primary (or an entry from before roles existed).
func servesHere(d *model.DirEntry) bool {
	return d.Role == model.RolePrimary || d.Role == ""
}
