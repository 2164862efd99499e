package replicate

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/store"
)

// TestReplicationLagUnderLoad writes at a steady rate (OPENDPS_LAG_RATE
// writes/s, default 2000, for OPENDPS_LAG_SECONDS, default 3) into one
// instance and prints the replication lag of every change, from its
// arrival at the source's watch to the destination's acknowledgement, as
// p50/p99. It asserts that the copy converges, not how fast: the figures
// depend on the machine.
func TestReplicationLagUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	rate, secs := envInt("OPENDPS_LAG_RATE", 2000), envInt("OPENDPS_LAG_SECONDS", 3)
	rs := newRegions(t, regA, regB)
	a, b := rs[regA], rs[regB]
	createInstance(t, a.st, "load", regA, regB, true)
	var mu sync.Mutex
	var lags []time.Duration
	a.source(t, func(s *Source) {
		s.acked = func(ats []time.Time) {
			now := time.Now()
			mu.Lock()
			for _, at := range ats {
				lags = append(lags, now.Sub(at))
			}
			mu.Unlock()
		}
	})
	waitEqual(t, a.st, b.st, "load")
	const workers = 32
	var n, failed atomic.Int64
	interval := time.Duration(workers) * time.Second / time.Duration(rate)
	end := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for i := 0; time.Now().Before(end); i++ {
				<-tick.C
				key := store.Key("load", store.KindRegistration, fmt.Sprintf("w%02d-%06d", w, i))
				err := a.st.Update(context.Background(), "load", func(tx *store.Tx) error {
					return tx.Put(key, map[string]any{"deviceId": key, "assignedHub": "hub-1.example.net", "at": time.Now()})
				})
				if err != nil {
					failed.Add(1)
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	waitEqual(t, a.st, b.st, "load")
	mu.Lock()
	defer mu.Unlock()
	if len(lags) == 0 {
		t.Fatal("no change acknowledged")
	}
	slices.Sort(lags)
	q := func(p float64) time.Duration { return lags[min(len(lags)-1, int(p*float64(len(lags))))] }
	msg := fmt.Sprintf("replication lag under %d writes/s for %ds (%d written, %d failed, %d revisions acknowledged): p50 %v, p99 %v, max %v",
		rate, secs, n.Load(), failed.Load(), len(lags), q(0.50), q(0.99), lags[len(lags)-1])
	t.Log(msg)
	fmt.Println(msg)
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err != nil || v <= 0 {
		return def
	}
	return v
}
