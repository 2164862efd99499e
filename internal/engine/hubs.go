package engine

import (
	"crypto/tls"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/hub"
)

// hubPool keeps one registry client per linked hub connection string and
// tracks hub health: a hub that failed failThreshold calls in a row is
// skipped by allocation for cooldown, then tried again. DPS keeps
// assigning devices to a dead hub; opendps does not.
type hubPool struct {
	tls     *tls.Config
	timeout time.Duration

	mu      sync.Mutex
	clients map[string]*hub.Client // by connection string; guarded by mu
	health  map[string]*hubHealth  // by lower-cased host name; guarded by mu
}

type hubHealth struct {
	fails     int
	downUntil time.Time
}

const (
	failThreshold = 2
	hubCooldown   = 5 * time.Second
)

func newHubPool(tc *tls.Config, timeout time.Duration) *hubPool {
	return &hubPool{tls: tc, timeout: timeout, clients: map[string]*hub.Client{}, health: map[string]*hubHealth{}}
}

// client returns the registry client of a linked hub.
func (p *hubPool) client(connStr string) (*hub.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[connStr]; ok {
		return c, nil
	}
	opts := []hub.Option{hub.WithTimeout(p.timeout)}
	if p.tls != nil {
		opts = append(opts, hub.WithTLSConfig(p.tls))
	}
	c, err := hub.New(connStr, opts...)
	if err != nil {
		return nil, err
	}
	if len(p.clients) > 10000 {
		clear(p.clients)
	}
	p.clients[connStr] = c
	return c, nil
}

// Healthy implements allocate.Health.
func (p *hubPool) Healthy(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.health[strings.ToLower(host)]
	return !ok || time.Now().After(h.downUntil)
}

// report records the outcome of a call to host. Only unavailability
// (network errors, 5xx, timeouts) counts against a hub.
func (p *hubPool) report(host string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := strings.ToLower(host)
	h := p.health[k]
	if h == nil {
		h = &hubHealth{}
		p.health[k] = h
	}
	if err == nil || !isUnavailable(err) {
		h.fails, h.downUntil = 0, time.Time{}
		return
	}
	h.fails++
	if h.fails >= failThreshold {
		h.downUntil = time.Now().Add(hubCooldown)
	}
}

func isUnavailable(err error) bool {
	return errorsIs(err, hub.ErrUnavailable) || errorsIs(err, hub.ErrThrottled)
}
