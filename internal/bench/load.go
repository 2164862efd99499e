package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// ticket is one registration to make: device n % devices, due at due.
type ticket struct {
	n   uint64
	due time.Time
}

// load is the load phase of a run.
type load struct {
	cfg       *Config
	f         *fleet
	endpoints []string
	tc        *tls.Config
	shared    *http.Client // ReuseConnections only
	limit     uint64       // tickets to issue; 0: until the deadline
	next      atomic.Uint64
	rr        atomic.Uint64 // endpoint round robin
	missed    atomic.Int64

	mu          sync.Mutex // guards the fields below
	registered  []bool     // device registered at least once
	all         Histogram
	first       Histogram
	repeat      Histogram
	errs        Errors
	attempts    int64
	firsts      int64
	repeats     int64
	roundTrips  int64  // of successful registrations
	polls       int64  // of successful registrations
	retries     int64  // throttle retries, all registrations
	nodeRetries Errors // registrations tried again on the next node, by what the node left answered
	lastFirst   time.Time
	firstRepeat time.Time // start of the earliest successful repeat
	start, end  time.Time
	epHits      map[string]int64
}

func newLoad(cfg *Config, f *fleet, tc *tls.Config) *load {
	l := &load{cfg: cfg, f: f, endpoints: cfg.endpoints(), tc: tc,
		registered: make([]bool, len(f.ids)), epHits: map[string]int64{}}
	if cfg.Rounds > 0 {
		l.limit = uint64(cfg.Rounds) * uint64(len(f.ids))
	}
	if cfg.ReuseConnections {
		tr := dpsclient.NewDeviceTransport(tc, false)
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		l.shared = &http.Client{Transport: tr}
	}
	return l
}

// run drives the workers until the deadline or the ticket limit, then
// waits for the registrations in flight (each bounded by its timeout).
func (l *load) run(ctx context.Context) {
	l.start = time.Now()
	issue, cancel := context.WithDeadline(ctx, l.start.Add(l.cfg.Duration))
	defer cancel()
	next := l.closedLoop(issue)
	if l.cfg.Rate > 0 {
		ch := make(chan ticket, l.cfg.Concurrency)
		go l.pace(issue, ch)
		next = func() (ticket, bool) { t, ok := <-ch; return t, ok }
	}
	var wg sync.WaitGroup
	for range min(l.cfg.Concurrency, len(l.f.ids)) {
		wg.Go(func() {
			for t, ok := next(); ok; t, ok = next() {
				l.one(ctx, t)
			}
		})
	}
	wg.Wait()
	l.end = time.Now()
	if l.shared != nil {
		l.shared.CloseIdleConnections()
	}
}

func (l *load) closedLoop(issue context.Context) func() (ticket, bool) {
	return func() (ticket, bool) {
		if issue.Err() != nil {
			return ticket{}, false
		}
		n := l.next.Add(1) - 1
		if l.limit > 0 && n >= l.limit {
			return ticket{}, false
		}
		return ticket{n: n, due: time.Now()}, true
	}
}

// pace issues tickets at cfg.Rate per second until issue ends or the
// limit is reached. A ticket that finds every worker busy and the queue
// full is dropped and counted as missed: the generator, not the server,
// fell behind, and the report says so.
func (l *load) pace(issue context.Context, ch chan<- ticket) {
	defer close(ch)
	perTicket := float64(time.Second) / l.cfg.Rate
	for n := uint64(0); l.limit == 0 || n < l.limit; n++ {
		due := l.start.Add(time.Duration(float64(n) * perTicket))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-issue.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if issue.Err() != nil {
			return
		}
		select {
		case ch <- ticket{n: n, due: due}:
		default:
			l.missed.Add(1)
		}
	}
}

// one makes the registration of ticket t and records it. A registration
// that meets a node that is dead, cut off or not ready is tried again on
// the next node (NodeRetries), as a load balancer would.
func (l *load) one(ctx context.Context, t ticket) {
	i := int(t.n % uint64(len(l.f.ids)))
	first := int(l.rr.Add(1) - 1)
	opts := dpsclient.DeviceOptions{Protocol: l.cfg.Protocol,
		IDScope: l.cfg.Conn.IDScope, RegistrationID: l.f.ids[i], SymmetricKey: l.f.keys[i],
		RetryThrottled: l.cfg.RetryThrottled, RequestTimeout: min(l.cfg.AttemptTimeout, l.cfg.RegistrationTimeout),
	}
	if l.cfg.Protocol == ProtocolMQTT { // a connection of its own: TLS handshake, CONNECT, SUBSCRIBE
		opts.TLSConfig = l.tc
	} else if opts.HTTPClient = l.shared; opts.HTTPClient == nil { // a device of its own: new connection, full TLS handshake
		opts.HTTPClient = &http.Client{Transport: dpsclient.NewDeviceTransport(l.tc, false)}
		defer opts.HTTPClient.CloseIdleConnections()
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.RegistrationTimeout)
	defer cancel()
	started := time.Now()
	for try := 0; ; try++ {
		opts.Endpoint = l.endpoints[(first+try)%len(l.endpoints)]
		res, err := dpsclient.Register(rctx, opts)
		if err == nil || try >= l.cfg.NodeRetries || rctx.Err() != nil || !nodeFailure(err) {
			l.record(i, opts.Endpoint, res, err, t.due, started)
			return
		}
		l.mu.Lock()
		l.nodeRetries.Add(err)
		l.mu.Unlock()
		// Every node may be briefly unready (a leader election): back off.
		select {
		case <-rctx.Done():
		case <-time.After(min(nodeRetryBackoff<<try, time.Second)):
		}
	}
}

// nodeRetryBackoff is the wait before the first retry on the next node;
// it doubles with every retry, up to a second.
const nodeRetryBackoff = 50 * time.Millisecond

// nodeFailure reports whether err says that the node, not the request,
// failed: a transport error or timeout, or 503 (not ready, no quorum).
func nodeFailure(err error) bool {
	var de *dpsclient.DeviceError
	if errors.As(err, &de) {
		return de.StatusCode == http.StatusServiceUnavailable
	}
	var re *dpsclient.RegistrationError
	if errors.As(err, &re) {
		return false
	}
	switch Classify(err) {
	case KindRefused, KindReset, KindNetTimeout, KindTransportOther, KindTimeout:
		return true
	}
	return false
}

func (l *load) record(i int, ep string, res *dpsclient.RegistrationResult, err error, due, started time.Time) {
	now := time.Now()
	lat := now.Sub(due)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts++
	l.epHits[ep]++
	if res != nil {
		l.retries += int64(res.ThrottleRetries)
	}
	if err != nil {
		l.errs.Add(err)
		return
	}
	l.all.Record(lat)
	l.roundTrips += int64(res.RoundTrips)
	l.polls += int64(res.Polls)
	if !l.registered[i] {
		l.registered[i] = true
		l.firsts++
		l.first.Record(lat)
		l.lastFirst = now
		return
	}
	l.repeats++
	l.repeat.Record(lat)
	if l.firstRepeat.IsZero() || started.Before(l.firstRepeat) {
		l.firstRepeat = started
	}
}

func (l *load) isRegistered(i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.registered[i]
}
