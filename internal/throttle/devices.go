package throttle

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// numShards spreads devices over independently locked maps. A power of two.
const numShards = 256

// deviceKey names a device. Registration ids are case-folded (ASCII).
type deviceKey struct{ instance, id string }

// deviceTable holds one bucket per device in sharded maps, bounded by max
// entries in total. Expired entries (full buckets) are swept from a shard
// at most once per sweep period, or when the shard is full; a full shard
// that has nothing to sweep evicts arbitrary entries (Go map order) down
// to 7/8 of its capacity, so that a flood of new ids costs amortised O(1).
type deviceTable struct {
	r        rate
	perShard int
	period   int64 // sweep period: the bucket's refill time (ns)
	seed     maphash.Seed
	shards   [numShards]shard
	evicted  atomic.Uint64
}

type shard struct {
	mu        sync.Mutex
	m         map[deviceKey]int64 // tat; guarded by mu
	lastSweep int64               // guarded by mu
	_         [40]byte            // keep shards on separate cache lines
}

func newDeviceTable(r rate, maxEntries int) *deviceTable {
	t := &deviceTable{r: r, seed: maphash.MakeSeed(),
		perShard: max(maxEntries/numShards, 1),
		period:   r.tolerance + r.interval}
	for i := range t.shards {
		t.shards[i].m = map[deviceKey]int64{}
	}
	return t
}

func (t *deviceTable) take(instance, id string, now int64) (bool, int64) {
	if t.r.unlimited() {
		return true, 0
	}
	id = foldASCII(id)
	s := &t.shards[maphash.String(t.seed, id)&(numShards-1)]
	k := deviceKey{instance, id}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, found := s.m[k]
	if !found {
		old = now
		t.makeRoom(s, now)
	}
	tat, ok, wait := t.r.take(old, now)
	if !ok {
		return false, wait
	}
	if !found { // never keep the caller's string alive beyond its id
		k = deviceKey{strings.Clone(instance), strings.Clone(id)}
	}
	s.m[k] = tat
	return true, 0
}

// makeRoom sweeps s when due or full, and evicts when sweeping was not
// enough. s.mu must be held.
func (t *deviceTable) makeRoom(s *shard, now int64) {
	full := len(s.m) >= t.perShard
	if full || now-s.lastSweep >= t.period {
		s.sweep(now)
	}
	if !full {
		return
	}
	// Leave headroom even when the sweep freed a little, so that the next
	// inserts do not sweep again.
	target := t.perShard * 7 / 8
	var n uint64
	for k := range s.m {
		if len(s.m) <= target {
			break
		}
		delete(s.m, k)
		n++
	}
	t.evicted.Add(n)
}

// sweep deletes the entries whose bucket is full again. s.mu must be held.
func (s *shard) sweep(now int64) {
	for k, tat := range s.m {
		if tat <= now {
			delete(s.m, k)
		}
	}
	s.lastSweep = now
}

func (t *deviceTable) sweepAll(now int64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.sweep(now)
		s.mu.Unlock()
	}
}

func (t *deviceTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// foldASCII lower-cases ASCII letters, allocating only when s has any.
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
