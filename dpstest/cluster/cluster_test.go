package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// TestClusterFaults exercises every fault of the harness on one cluster:
// the leader killed and restarted, a node frozen and thawed, a graceful
// restart, and (with network namespaces) a partition that must isolate
// the node's etcd member in both directions while its APIs keep answering.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three opendps processes")
	}
	c := cluster.New(t, cluster.Config{Nodes: 3, Zones: []string{"1", "2", "3"}, Region: "westeurope"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	l := mustLeader(t, ctx, c)
	if err := c.Kill(l); err != nil {
		t.Fatal(err)
	}
	if nl := mustLeader(t, ctx, c); nl == l {
		t.Fatalf("leader %d still leader after SIGKILL", l)
	}
	put(t, ctx, c, (l+1)%3, "after-kill")
	if err := c.Start(l); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, ctx, c)

	f := (mustLeader(t, ctx, c) + 1) % 3
	if err := c.Freeze(f); err != nil {
		t.Fatal(err)
	}
	put(t, ctx, c, (f+1)%3, "while-frozen")
	if err := c.Thaw(f); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, ctx, c)

	if err := c.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, ctx, c)

	if !c.CanPartition() {
		t.Logf("no partitions on this host: %v", cluster.ErrPartitionUnsupported)
		return
	}
	p := mustLeader(t, ctx, c)
	if err := c.Partition(p); err != nil {
		t.Fatal(err)
	}
	nl := p
	for deadline := time.Now().Add(10 * time.Second); nl == p; {
		if time.Now().After(deadline) {
			t.Fatalf("partitioned leader %s kept the leadership for 10s", c.Name(p))
		}
		time.Sleep(100 * time.Millisecond)
		nl = mustLeader(t, ctx, c)
	}
	put(t, ctx, c, nl, "during-partition")
	before, err := c.Status(ctx, p)
	if err != nil {
		t.Fatalf("partitioned member must keep answering clients: %v", err)
	}
	for i := range 20 {
		put(t, ctx, c, nl, fmt.Sprint("majority-", i))
	}
	after, err := c.Status(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if after.RaftIndex != before.RaftIndex {
		t.Errorf("partitioned member's raft index moved %d -> %d: it still hears the leader", before.RaftIndex, after.RaftIndex)
	}
	if err := c.Ready(ctx, p); err != nil {
		t.Logf("partitioned node readiness: %v", err)
	}
	if err := c.Heal(p); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, ctx, c)
}

func mustLeader(t *testing.T, ctx context.Context, c *cluster.Cluster) int {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		l, err := c.WaitLeader(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Running(l) {
			return l
		}
	}
}

func mustHealthy(t *testing.T, ctx context.Context, c *cluster.Cluster) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		t.Fatal(err)
	}
}

// put writes a test key through member i.
func put(t *testing.T, ctx context.Context, c *cluster.Cluster, i int, v string) {
	t.Helper()
	cli, err := c.MemberClient(i)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Put(pctx, "/harness-test", v)
		cancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("put %s through %s: %v", v, c.Name(i), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
