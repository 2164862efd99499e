package forward

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
)

// Paths of the locate endpoints (docs/dr-design.md): the ID scope or
// instance name follows, path-escaped.
const (
	pathLocate         = peer.PathPrefix + "locate/"
	pathLocateInstance = peer.PathPrefix + "locate-instance/"
)

// Location is the answer of a locate endpoint: the answering region holds
// the instance as primary or fenced. Other regions answer 404.
type Location struct {
	Region   string `json:"region"`
	Instance string `json:"instance"`
	Epoch    uint64 `json:"epoch"`
	Role     string `json:"role"`
	// DREnabled is false for a data-residency instance (its failover is
	// refused everywhere, also by regions that never saw it).
	DREnabled bool `json:"drEnabled"`
}

// errPeersUnreachable is returned by locate when no peer holds the key as
// primary and at least one peer could not be asked.
var errPeersUnreachable = errors.New("forward: some peer regions could not be asked")

// maxCached bounds the locate cache; it is cleared when full.
const maxCached = 10000

// locator asks the peers which region holds an ID scope or an instance,
// and caches their answers. It is safe for concurrent use.
type locator struct {
	peer    *peer.Client
	log     *slog.Logger
	ttl     time.Duration // positive answers
	negTTL  time.Duration // nobody has it, or a peer was unreachable
	timeout time.Duration // of one round of questions
	now     func() time.Time

	rounds atomic.Int64 // rounds of questions asked (tests)

	mu       sync.Mutex
	cache    map[string]located       // path -> answer; guarded by mu
	inflight map[string]chan struct{} // path -> closed when its round ends; guarded by mu
}

type located struct {
	loc   *Location // nil: nobody has it
	err   error
	until time.Time
}

func newLocator(p *peer.Client, log *slog.Logger, ttl, negTTL time.Duration) *locator {
	return &locator{peer: p, log: log, ttl: ttl, negTTL: negTTL, timeout: 2 * time.Second, now: time.Now,
		cache: map[string]located{}, inflight: map[string]chan struct{}{}}
}

// scope locates an ID scope; instance an instance name. A nil Location
// with a nil error means that no peer holds it.
func (l *locator) scope(ctx context.Context, idScope string) (*Location, error) {
	return l.locate(ctx, scopePath(idScope))
}

func (l *locator) instance(ctx context.Context, name string) (*Location, error) {
	return l.locate(ctx, instancePath(name))
}

// scopePath and instancePath are the locate paths, and cache keys.
func scopePath(idScope string) string {
	return pathLocate + url.PathEscape(strings.ToLower(idScope))
}

func instancePath(name string) string {
	return pathLocateInstance + url.PathEscape(strings.ToLower(name))
}

// forget drops the cached answer of path (the located region refused).
func (l *locator) forget(path string) {
	l.mu.Lock()
	delete(l.cache, path)
	l.mu.Unlock()
}

// locate returns the cached answer for path or asks the peers, once for
// all concurrent callers.
func (l *locator) locate(ctx context.Context, path string) (*Location, error) {
	for {
		l.mu.Lock()
		if c, ok := l.cache[path]; ok && l.now().Before(c.until) {
			l.mu.Unlock()
			return c.loc, c.err
		}
		wait, busy := l.inflight[path]
		if !busy {
			wait = make(chan struct{})
			l.inflight[path] = wait
		}
		l.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		loc, err := l.ask(context.WithoutCancel(ctx), path)
		ttl := l.ttl
		if loc == nil {
			ttl = l.negTTL
		}
		l.mu.Lock()
		if len(l.cache) >= maxCached {
			clear(l.cache)
		}
		l.cache[path] = located{loc: loc, err: err, until: l.now().Add(ttl)}
		delete(l.inflight, path)
		l.mu.Unlock()
		close(wait)
		return loc, err
	}
}

// ask puts the question to every peer at once and keeps the best answer:
// the primary of the highest epoch, else a fenced one.
func (l *locator) ask(ctx context.Context, path string) (*Location, error) {
	l.rounds.Add(1)
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	peers := l.peer.Peers()
	answers := make([]*Location, len(peers))
	failed := make([]bool, len(peers))
	var wg sync.WaitGroup
	for i, region := range peers {
		wg.Go(func() { answers[i], failed[i] = l.askOne(ctx, region, path) })
	}
	wg.Wait()
	var best *Location
	unreachable := false
	for i, a := range answers {
		unreachable = unreachable || failed[i]
		if a == nil {
			continue
		}
		if best == nil || better(a, best) {
			best = a
		}
	}
	if best == nil && unreachable {
		return nil, errPeersUnreachable
	}
	return best, nil
}

func better(a, b *Location) bool {
	if (a.Role == model.RolePrimary) != (b.Role == model.RolePrimary) {
		return a.Role == model.RolePrimary
	}
	return a.Epoch > b.Epoch
}

// askOne asks region. It logs only the region and the status: the path
// names the ID scope or instance.
func (l *locator) askOne(ctx context.Context, region, path string) (loc *Location, failed bool) {
	resp, err := l.peer.Do(ctx, region, http.MethodGet, path, nil, nil)
	if err != nil {
		l.log.Warn("locate: peer unreachable", "peer", region)
		return nil, true
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, false
	default:
		l.log.Warn("locate: peer refused", "peer", region, "status", resp.StatusCode)
		return nil, true
	}
	var a Location
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a); err != nil {
		l.log.Warn("locate: bad answer", "peer", region)
		return nil, true
	}
	if a.Role != model.RolePrimary && a.Role != model.RoleFenced {
		return nil, false
	}
	a.Region = region // the region whose certificate answered
	return &a, false
}
