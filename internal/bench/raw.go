package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// RawPrefix is where raw writes go; everything under it is deleted
// afterwards. opendps never uses it.
const RawPrefix = "/opendps-bench/"

// rawOpTimeout bounds one raw transaction.
const rawOpTimeout = 5 * time.Second

// fenceBytes is the size of the fence value compared by every raw write,
// about an instance's directory entry, whose value the store compares.
const fenceBytes = 256

// RawConfig says how to measure raw etcd writes.
type RawConfig struct {
	Endpoints  []string      // etcd client URLs of one cluster
	Writers    int           // concurrent writers
	Duration   time.Duration // how long they write
	ValueBytes int           // size of each value
	RunID      string        // keys go under RawPrefix + RunID + "/"
}

// RawReport is the outcome of a raw measurement.
type RawReport struct {
	Endpoints       []string `json:"endpoints"`
	Writers         int      `json:"writers"`
	ValueBytes      int      `json:"valueBytes"`
	ElapsedSeconds  float64  `json:"elapsedSeconds"`
	Writes          int64    `json:"writes"`
	WritesPerSecond float64  `json:"writesPerSecond"`
	Latency         Latency  `json:"latencyMs"`
	Errors          int64    `json:"errors"`
	FirstError      string   `json:"firstError,omitempty"`
	Deleted         int64    `json:"deleted"`
}

// RawWrites runs cfg.Writers concurrent writers for cfg.Duration, each
// repeating the transaction one registration costs: a compare of one
// key's value (a fence, as the store compares the value of the instance's
// directory entry) and one put of a new key with a cfg.ValueBytes value. Then it deletes the
// run's prefix.
func RawWrites(ctx context.Context, cfg RawConfig) (*RawReport, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: rawOpTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("bench: etcd %v: %w", cfg.Endpoints, err)
	}
	defer cli.Close()
	prefix := RawPrefix + cfg.RunID + "/"
	fence := prefix + "fence"
	octx, cancel := context.WithTimeout(ctx, rawOpTimeout)
	fenceValue := rawValue(fenceBytes)
	_, err = cli.Put(octx, fence, fenceValue)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bench: etcd %v: %w", cfg.Endpoints, err)
	}
	rep := &RawReport{Endpoints: cfg.Endpoints, Writers: cfg.Writers, ValueBytes: cfg.ValueBytes}
	rw := &rawWriters{cli: cli, prefix: prefix, value: rawValue(cfg.ValueBytes),
		cmp: clientv3.Compare(clientv3.Value(fence), "=", fenceValue)}
	start := time.Now()
	rw.run(ctx, cfg.Writers, start.Add(cfg.Duration))
	elapsed := time.Since(start)
	rep.ElapsedSeconds = round3(elapsed.Seconds())
	rep.Writes, rep.Errors, rep.FirstError = rw.writes, rw.errors, rw.firstErr
	rep.WritesPerSecond = round1(float64(rw.writes) / elapsed.Seconds())
	rep.Latency = rw.lat.Summary()
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // even when ctx ended
	defer cancel()
	del, err := cli.Delete(dctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return rep, fmt.Errorf("bench: delete %s: %w", prefix, err)
	}
	rep.Deleted = del.Deleted
	return rep, nil
}

func rawValue(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

type rawWriters struct {
	cli    *clientv3.Client
	prefix string
	value  string
	cmp    clientv3.Cmp

	mu       sync.Mutex // guards the fields below
	lat      Histogram
	writes   int64
	errors   int64
	firstErr string
}

func (rw *rawWriters) run(ctx context.Context, writers int, deadline time.Time) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				rw.one(ctx, rw.prefix+"w"+strconv.Itoa(w)+"-"+strconv.Itoa(seq))
			}
		})
	}
	wg.Wait()
}

func (rw *rawWriters) one(ctx context.Context, key string) {
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rawOpTimeout)
	defer cancel()
	start := time.Now()
	resp, err := rw.cli.Txn(octx).If(rw.cmp).Then(clientv3.OpPut(key, rw.value)).Commit()
	d := time.Since(start)
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("fence compare failed")
	}
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if err != nil {
		rw.errors++
		if rw.firstErr == "" {
			rw.firstErr = err.Error()
		}
		return
	}
	rw.writes++
	rw.lat.Record(d)
}
