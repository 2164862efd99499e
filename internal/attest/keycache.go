package attest

import "sync"

// DefaultKeyCacheSize is the capacity NewKeyCache uses for a size of zero
// or less: at most about 15 MB.
const DefaultKeyCacheSize = 1 << 16

// KeyCache keeps device keys derived from group keys, keyed by (group id,
// group etag, registration id), so that a device that polls or registers
// again does not cost one derivation per symmetric-key group (up to 100,
// §3.2). Every write of a group changes its etag (internal/enrollment), so
// a rotated key is never served from the cache; entries of old etags age
// out. Eviction is first-in first-out at capacity. Entries are added only
// when a device authenticates (with the keys of every group tried before
// the one that matched), so unauthenticated requests cannot flush it.
//
// A KeyCache holds secrets (derived device keys) in memory, as the group
// keys already are. It is safe for concurrent use; the zero value is not
// usable, call NewKeyCache.
type KeyCache struct {
	mu      sync.Mutex
	entries map[cacheKey]derivedKeys // guarded by mu
	order   []cacheKey               // guarded by mu; ring of inserted keys
	next    int                      // guarded by mu; next slot of order to evict/fill
}

type cacheKey struct{ group, etag, regID string }

type cacheEntry struct {
	key  cacheKey
	keys derivedKeys
}

// NewKeyCache returns a cache of at most size entries (one per group and
// registration id). size <= 0 means DefaultKeyCacheSize.
func NewKeyCache(size int) *KeyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	return &KeyCache{entries: make(map[cacheKey]derivedKeys), order: make([]cacheKey, 0, size)}
}

// Len returns the number of cached entries.
func (c *KeyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *KeyCache) get(k cacheKey) (derivedKeys, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[k]
	return v, ok
}

// putAll adds entries; a nil cache ignores them.
func (c *KeyCache) putAll(entries []cacheEntry) {
	if c == nil || len(entries) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range entries {
		c.put(e.key, e.keys)
	}
}

// put adds or replaces an entry; c.mu must be held.
func (c *KeyCache) put(k cacheKey, v derivedKeys) {
	if _, ok := c.entries[k]; ok {
		c.entries[k] = v
		return
	}
	if len(c.order) < cap(c.order) {
		c.order = append(c.order, k)
	} else {
		delete(c.entries, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % len(c.order)
	}
	c.entries[k] = v
}
