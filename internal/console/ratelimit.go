package console

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sign-in attempts are limited per client IP address (the connection's
// remote address: the console is served directly by the node, so a
// forwarded-for header would be the client's word). The operator token and
// policy keys are 256-bit random values that nobody guesses, but the limit
// keeps a script from hammering the node's store with look-ups, and the
// log with refusals.

// Defaults of Config.SignInRate and SignInBurst: 10 attempts at once,
// then one every 6 s (10 a minute).
const (
	DefaultSignInRate  = 1.0 / 6
	DefaultSignInBurst = 10
	// maxLimiters bounds the addresses tracked; beyond it, addresses not
	// seen for limiterIdle are forgotten, and new ones share one limiter.
	maxLimiters = 10000
	limiterIdle = 10 * time.Minute
)

// ipLimiter is a token bucket per client IP.
type ipLimiter struct {
	r     rate.Limit
	burst int
	now   func() time.Time

	mu       sync.Mutex
	byIP     map[string]*ipBucket // guarded by mu
	overflow *rate.Limiter        // shared by new addresses when byIP is full
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newIPLimiter returns nil (no limit) for a negative r.
func newIPLimiter(r float64, burst int) *ipLimiter {
	if r < 0 {
		return nil
	}
	if r == 0 {
		r = DefaultSignInRate
	}
	if burst <= 0 {
		burst = DefaultSignInBurst
	}
	return &ipLimiter{r: rate.Limit(r), burst: burst, now: time.Now, byIP: map[string]*ipBucket{},
		overflow: rate.NewLimiter(rate.Limit(r), burst)}
}

// allow takes one attempt of ip; when none is left it returns false and
// how long until the next one.
func (l *ipLimiter) allow(ip string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	b := l.byIP[ip]
	var lim *rate.Limiter
	switch {
	case b != nil:
		b.seen = now
		lim = b.lim
	default:
		if len(l.byIP) >= maxLimiters {
			for k, v := range l.byIP {
				if now.Sub(v.seen) > limiterIdle {
					delete(l.byIP, k)
				}
			}
		}
		if len(l.byIP) < maxLimiters {
			lim = rate.NewLimiter(l.r, l.burst)
			l.byIP[ip] = &ipBucket{lim: lim, seen: now}
		} else {
			lim = l.overflow
		}
	}
	l.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now) // a refused attempt costs nothing more
		return false, d
	}
	return true, 0
}

// clientIP is the IP address of r's connection.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
