package throttle

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults. DPS itself allows 1,000 registrations and 1,000 operations per
// minute per instance and 5 polls per 10 s per device (spec §9); opendps
// defaults are far higher because they only guard the engine against
// runaway clients, not meter a plan.
const (
	DefaultRegistrationsPerMinute = 600_000
	DefaultOperationsPerMinute    = 600_000
	DefaultPollsPer10s            = 100
	DefaultMaxDevices             = 1_000_000
	// DefaultMaxInstances bounds per-instance entries; idle ones are swept
	// when it is reached.
	DefaultMaxInstances = 100_000
)

// ErrThrottled is what callers wrap when an Allow method refuses, so that
// errors.Is works across layers. This package never returns it itself.
var ErrThrottled = errors.New("throttle: rate limit exceeded")

// Clock tells the time. Implementations must be safe for concurrent use
// and should be monotonic (time.Now is); a clock going backwards only
// makes limits stricter for a while.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config sets the limits. For every rate a zero value means the default
// and a negative value means unlimited.
type Config struct {
	// RegistrationsPerMinute bounds register calls per instance; the
	// bucket holds one minute's worth, so a burst of this size passes.
	RegistrationsPerMinute int `json:"registrationsPerMinute,omitempty"`
	// OperationsPerMinute bounds other billable operations per instance
	// (service API calls), like RegistrationsPerMinute.
	OperationsPerMinute int `json:"operationsPerMinute,omitempty"`
	// PollsPer10s bounds operation-status polls per device (instance,
	// registration id); the bucket holds 10 s worth.
	PollsPer10s int `json:"pollsPer10s,omitempty"`
	// MaxDevices bounds the number of devices whose poll state is kept
	// (0: DefaultMaxDevices; negative is invalid). State of a device that
	// has not polled for 10 s is dropped; when the bound is reached anyway,
	// arbitrary entries are evicted, which resets their buckets (the limit
	// fails open for those devices rather than growing without bound).
	MaxDevices int `json:"maxDevices,omitempty"`
	// Nodes, when set, returns how many nodes share the per-instance limits
	// (RegistrationsPerMinute, OperationsPerMinute): the live nodes of the
	// region, which a load balancer spreads a tenant's requests over. Each
	// node then allows limit/Nodes() (at least one per period), so that the
	// region as a whole allows about the configured limit rather than
	// Nodes() times it. A result below 1 counts as 1. It is called on every
	// per-instance decision, so it must be cheap (an atomic load). Per-device
	// poll limits stay per node: a device's polls mostly reach the node its
	// connection is on. nil: the node is alone.
	Nodes func() int `json:"-"`
	// Clock (nil: the system clock). Tests pass a fake.
	Clock Clock `json:"-"`
}

// DefaultConfig returns the default limits.
func DefaultConfig() Config {
	return Config{
		RegistrationsPerMinute: DefaultRegistrationsPerMinute,
		OperationsPerMinute:    DefaultOperationsPerMinute,
		PollsPer10s:            DefaultPollsPer10s,
		MaxDevices:             DefaultMaxDevices,
	}
}

// Validate reports a configuration New would refuse.
func (c Config) Validate() error {
	if c.MaxDevices < 0 {
		return fmt.Errorf("throttle: MaxDevices %d is negative", c.MaxDevices)
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RegistrationsPerMinute == 0 {
		c.RegistrationsPerMinute = d.RegistrationsPerMinute
	}
	if c.OperationsPerMinute == 0 {
		c.OperationsPerMinute = d.OperationsPerMinute
	}
	if c.PollsPer10s == 0 {
		c.PollsPer10s = d.PollsPer10s
	}
	if c.MaxDevices == 0 {
		c.MaxDevices = d.MaxDevices
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return c
}

// Limiter applies a Config. The zero value is not usable; call New.
type Limiter struct {
	clock Clock
	epoch time.Time // times are nanoseconds since epoch (monotonic with time.Now)

	register  rate
	operation rate
	poll      rate

	registers  *instanceTable
	operations *instanceTable
	devices    *deviceTable

	throttled atomic.Uint64

	// Region-wide per-instance limits (Config.Nodes).
	nodes                   func() int
	registerCount, opsCount int
	shared                  atomic.Pointer[sharedRates]
}

// sharedRates are the per-instance rates of a node that shares the limits
// with n-1 others.
type sharedRates struct {
	n                   int
	register, operation rate
}

// New returns a Limiter for cfg; zero fields take their defaults.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := &Limiter{
		clock:     cfg.Clock,
		register:  newRate(cfg.RegistrationsPerMinute, time.Minute),
		operation: newRate(cfg.OperationsPerMinute, time.Minute),
		poll:      newRate(cfg.PollsPer10s, 10*time.Second),
		nodes:     cfg.Nodes,

		registerCount: cfg.RegistrationsPerMinute,
		opsCount:      cfg.OperationsPerMinute,
	}
	l.epoch = l.clock.Now()
	l.registers = newInstanceTable(DefaultMaxInstances)
	l.operations = newInstanceTable(DefaultMaxInstances)
	l.devices = newDeviceTable(l.poll, cfg.MaxDevices)
	return l, nil
}

func (l *Limiter) now() int64 { return int64(l.clock.Now().Sub(l.epoch)) }

// AllowRegister takes a token from instance's registration bucket. When it
// refuses, retryAfter is the wait before a token is available, in whole
// seconds, at least 1 s (the DPS Retry-After header).
func (l *Limiter) AllowRegister(instance string) (ok bool, retryAfter time.Duration) {
	reg, _ := l.instanceRates()
	return l.decide(l.registers.take(reg, instance, l.now()))
}

// AllowOperation takes a token from instance's operations bucket, like
// AllowRegister.
func (l *Limiter) AllowOperation(instance string) (ok bool, retryAfter time.Duration) {
	_, op := l.instanceRates()
	return l.decide(l.operations.take(op, instance, l.now()))
}

// Nodes returns the number of nodes the per-instance limits are currently
// shared with, this one included (Config.Nodes; 1 when unset).
func (l *Limiter) Nodes() int {
	if l.nodes == nil {
		return 1
	}
	return max(l.nodes(), 1)
}

// instanceRates returns this node's share of the per-instance rates.
func (l *Limiter) instanceRates() (register, operation rate) {
	n := l.Nodes()
	if n == 1 {
		return l.register, l.operation
	}
	if s := l.shared.Load(); s != nil && s.n == n {
		return s.register, s.operation
	}
	s := &sharedRates{n: n, register: shareOf(l.registerCount, n, time.Minute), operation: shareOf(l.opsCount, n, time.Minute)}
	l.shared.Store(s)
	return s.register, s.operation
}

// shareOf is one node's share of count per period among n nodes: count/n,
// rounded down (the region never allows more than count) but at least 1.
// A bucket keeps its state (a time) when its rate changes with n.
func shareOf(count, n int, period time.Duration) rate {
	if count <= 0 {
		return rate{} // unlimited
	}
	return newRate(max(count/n, 1), period)
}

// AllowPoll takes a token from the poll bucket of the device
// (instance, registrationID); registration ids compare case-insensitively
// (ASCII), as DPS does.
func (l *Limiter) AllowPoll(instance, registrationID string) (ok bool, retryAfter time.Duration) {
	return l.decide(l.devices.take(instance, registrationID, l.now()))
}

func (l *Limiter) decide(ok bool, wait int64) (bool, time.Duration) {
	if ok {
		return true, 0
	}
	l.throttled.Add(1)
	return false, RetryAfter(time.Duration(wait))
}

// RetryAfter rounds a wait up to whole seconds, at least 1 s: what a
// Retry-After header can say.
func RetryAfter(wait time.Duration) time.Duration {
	s := (wait + time.Second - 1) / time.Second
	if s < 1 {
		s = 1
	}
	return s * time.Second
}

// Stats are counters for metrics and tests.
type Stats struct {
	Devices   int    // devices whose poll state is kept
	Instances int    // instances with registration or operation state
	Evicted   uint64 // device entries evicted before they expired
	Throttled uint64 // refusals, all kinds
}

// Stats returns the current counters. It locks each shard in turn, so do
// not call it on a hot path.
func (l *Limiter) Stats() Stats {
	return Stats{
		Devices:   l.devices.len(),
		Instances: max(l.registers.len(), l.operations.len()),
		Evicted:   l.devices.evicted.Load(),
		Throttled: l.throttled.Load(),
	}
}

// Sweep drops every entry whose bucket is full again. The Limiter also
// sweeps by itself (a shard at most every 10 s, or when it is full); Sweep
// is for tests and for callers that want memory back sooner.
func (l *Limiter) Sweep() {
	now := l.now()
	l.devices.sweepAll(now)
	l.registers.sweep(now)
	l.operations.sweep(now)
}

// instanceTable holds one bucket per instance. Instances are few and
// rarely added, so the map is copy-on-write: lookups take no lock and do
// not allocate. The rate is given on every take: it changes with the
// number of nodes sharing the limit.
type instanceTable struct {
	max int
	m   atomic.Pointer[map[string]*cell]
	mu  sync.Mutex // serialises writers of m
}

// cell is one bucket's theoretical arrival time.
type cell struct{ tat atomic.Int64 }

func newInstanceTable(maxEntries int) *instanceTable {
	t := &instanceTable{max: maxEntries}
	m := map[string]*cell{}
	t.m.Store(&m)
	return t
}

func (t *instanceTable) take(r rate, key string, now int64) (bool, int64) {
	if r.unlimited() {
		return true, 0
	}
	c := (*t.m.Load())[key]
	if c == nil {
		c = t.add(key, now)
	}
	for {
		old := c.tat.Load()
		tat, ok, wait := r.take(old, now)
		if !ok {
			return false, wait
		}
		if c.tat.CompareAndSwap(old, tat) {
			return true, 0
		}
	}
}

// add inserts key (sweeping idle entries first when the table is full) and
// returns its cell. An entry removed by a sweep while a caller still holds
// its cell costs at most that caller's token: the limit fails open.
func (t *instanceTable) add(key string, now int64) *cell {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	if c := old[key]; c != nil {
		return c
	}
	m := make(map[string]*cell, len(old)+1)
	for k, c := range old {
		if len(old) < t.max || c.tat.Load() > now {
			m[k] = c
		}
	}
	c := &cell{}
	c.tat.Store(now - 1) // a full bucket
	m[key] = c
	t.m.Store(&m)
	return c
}

func (t *instanceTable) sweep(now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	m := make(map[string]*cell, len(old))
	for k, c := range old {
		if c.tat.Load() > now {
			m[k] = c
		}
	}
	t.m.Store(&m)
}

func (t *instanceTable) len() int { return len(*t.m.Load()) }
