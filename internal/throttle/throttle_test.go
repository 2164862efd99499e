package throttle

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(t *testing.T, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg.Clock = clk
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

func TestRetryAfter(t *testing.T) {
	tests := []struct{ in, want time.Duration }{
		{0, time.Second},
		{-time.Second, time.Second},
		{time.Nanosecond, time.Second},
		{time.Second, time.Second},
		{time.Second + time.Nanosecond, 2 * time.Second},
		{5500 * time.Millisecond, 6 * time.Second},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.in); got != tt.want {
			t.Errorf("RetryAfter(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRegisterBurstThenRefill(t *testing.T) {
	l, clk := newLimiter(t, Config{RegistrationsPerMinute: 10}) // one token per 6 s
	for i := range 10 {
		if ok, _ := l.AllowRegister("inst"); !ok {
			t.Fatalf("registration %d refused within the burst", i)
		}
	}
	ok, wait := l.AllowRegister("inst")
	if ok || wait != 6*time.Second {
		t.Fatalf("11th registration: ok=%v wait=%v, want refused with 6s", ok, wait)
	}
	clk.Advance(500 * time.Millisecond)
	if ok, wait := l.AllowRegister("inst"); ok || wait != 6*time.Second {
		t.Fatalf("after 0.5s: ok=%v wait=%v, want refused with 6s (5.5s rounded up)", ok, wait)
	}
	if ok, _ := l.AllowRegister("other"); !ok {
		t.Fatal("another instance shares the bucket")
	}
	clk.Advance(5500 * time.Millisecond)
	if ok, _ := l.AllowRegister("inst"); !ok {
		t.Fatal("refused after the refill interval")
	}
	if ok, _ := l.AllowRegister("inst"); ok {
		t.Fatal("two tokens after one refill interval")
	}
	if got := l.Stats().Throttled; got != 3 {
		t.Errorf("Throttled = %d, want 3", got)
	}
}

func TestOperationsAreSeparateFromRegistrations(t *testing.T) {
	l, _ := newLimiter(t, Config{RegistrationsPerMinute: 1, OperationsPerMinute: 2})
	if ok, _ := l.AllowRegister("i"); !ok {
		t.Fatal("first registration refused")
	}
	for i := range 2 {
		if ok, _ := l.AllowOperation("i"); !ok {
			t.Fatalf("operation %d refused", i)
		}
	}
	if ok, wait := l.AllowOperation("i"); ok || wait != 30*time.Second {
		t.Fatalf("3rd operation: ok=%v wait=%v, want refused with 30s", ok, wait)
	}
}

func TestPollPerDevice(t *testing.T) {
	l, clk := newLimiter(t, Config{PollsPer10s: 5}) // the DPS limit
	for i := range 5 {
		if ok, _ := l.AllowPoll("inst", "dev-1"); !ok {
			t.Fatalf("poll %d refused", i)
		}
	}
	if ok, wait := l.AllowPoll("inst", "DEV-1"); ok || wait != 2*time.Second {
		t.Fatalf("6th poll (upper-case id): ok=%v wait=%v, want refused with 2s", ok, wait)
	}
	if ok, _ := l.AllowPoll("inst", "dev-2"); !ok {
		t.Fatal("another device shares the bucket")
	}
	if ok, _ := l.AllowPoll("inst2", "dev-1"); !ok {
		t.Fatal("the same id in another instance shares the bucket")
	}
	clk.Advance(2 * time.Second)
	if ok, _ := l.AllowPoll("inst", "dev-1"); !ok {
		t.Fatal("refused after the refill interval")
	}
}

func TestDefaultsAndUnlimited(t *testing.T) {
	l, _ := newLimiter(t, Config{})
	for i := range DefaultPollsPer10s {
		if ok, _ := l.AllowPoll("i", "d"); !ok {
			t.Fatalf("default config: poll %d refused", i)
		}
	}
	if ok, _ := l.AllowPoll("i", "d"); ok {
		t.Fatalf("default config: poll %d allowed", DefaultPollsPer10s+1)
	}

	l, _ = newLimiter(t, Config{RegistrationsPerMinute: -1, OperationsPerMinute: -1, PollsPer10s: -1})
	for range 10_000 {
		ok1, _ := l.AllowRegister("i")
		ok2, _ := l.AllowOperation("i")
		ok3, _ := l.AllowPoll("i", "d")
		if !ok1 || !ok2 || !ok3 {
			t.Fatal("unlimited config refused")
		}
	}
	if s := l.Stats(); s.Devices != 0 || s.Instances != 0 {
		t.Errorf("unlimited config keeps state: %+v", s)
	}
}

func TestValidate(t *testing.T) {
	if _, err := New(Config{MaxDevices: -1}); err == nil {
		t.Error("New accepted MaxDevices -1")
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestExpiredDevicesAreDropped(t *testing.T) {
	l, clk := newLimiter(t, Config{PollsPer10s: 5})
	for i := range 1000 {
		l.AllowPoll("inst", "dev-"+strconv.Itoa(i))
	}
	if got := l.Stats().Devices; got != 1000 {
		t.Fatalf("Devices = %d, want 1000", got)
	}
	clk.Advance(2 * time.Second) // one poll each refilled; bucket full again
	l.Sweep()
	if got := l.Stats().Devices; got != 0 {
		t.Fatalf("after refill and Sweep: Devices = %d, want 0", got)
	}
	// Lazy sweeps: new inserts after a sweep period clean their shard.
	for i := range 1000 {
		l.AllowPoll("inst", "dev-"+strconv.Itoa(i))
	}
	clk.Advance(11 * time.Second)
	for i := range 1000 {
		l.AllowPoll("inst", "new-"+strconv.Itoa(i))
	}
	if got := l.Stats().Devices; got > 1100 {
		t.Errorf("lazy sweep left %d devices, want about 1000", got)
	}
}

func TestDeviceBound(t *testing.T) {
	const maxDevices = numShards * 8
	l, _ := newLimiter(t, Config{PollsPer10s: 5, MaxDevices: maxDevices})
	for i := range 50 * maxDevices {
		if ok, _ := l.AllowPoll("inst", "dev-"+strconv.Itoa(i)); !ok {
			t.Fatalf("first poll of a new device refused (%d)", i)
		}
	}
	s := l.Stats()
	if s.Devices > maxDevices || s.Evicted == 0 {
		t.Errorf("Stats = %+v, want Devices <= %d and evictions", s, maxDevices)
	}
}

// TestConcurrentExactness checks that racing callers never take more
// tokens than the bucket holds.
func TestConcurrentExactness(t *testing.T) {
	l, _ := newLimiter(t, Config{RegistrationsPerMinute: 500, PollsPer10s: 50})
	var regs, polls atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if ok, _ := l.AllowRegister("inst"); ok {
					regs.Add(1)
				}
				if ok, _ := l.AllowPoll("inst", "dev"); ok {
					polls.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if regs.Load() != 500 || polls.Load() != 50 {
		t.Errorf("allowed %d registrations and %d polls, want 500 and 50", regs.Load(), polls.Load())
	}
}

// TestRealClockSynctest runs the limiter on the real clock inside a
// synctest bubble, where time.Sleep advances a fake clock instantly.
func TestRealClockSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, err := New(Config{PollsPer10s: 5})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			l.AllowPoll("i", "d")
		}
		ok, wait := l.AllowPoll("i", "d")
		if ok {
			t.Fatal("6th poll allowed")
		}
		time.Sleep(wait)
		if ok, _ := l.AllowPoll("i", "d"); !ok {
			t.Fatalf("poll refused after waiting Retry-After %v", wait)
		}
	})
}

func BenchmarkAllowRegister(b *testing.B) {
	l, _ := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.AllowRegister("default")
		}
	})
}

func BenchmarkAllowPoll(b *testing.B) {
	l, _ := New(Config{})
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "bench-device-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	var seq atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(1 << 12)
		for pb.Next() {
			l.AllowPoll("default", ids[i%uint64(len(ids))])
			i++
		}
	})
}

func BenchmarkAllowPollNewDevices(b *testing.B) {
	l, _ := New(Config{MaxDevices: 100_000})
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = "bench-device-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	var seq atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.AllowPoll("default", ids[seq.Add(1)%uint64(len(ids))])
		}
	})
}
