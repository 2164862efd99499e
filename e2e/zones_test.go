package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/bench"
	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/internal/node"
)

// TestZonesSurviveNodeLoss runs the load generator against a dev
// deployment of three nodes in zones 1, 2 and 3, spreading registrations
// over all nodes, and stops the leader's node in the middle: the region
// stays zone-redundant, the other two keep serving, and every registration
// succeeds (those that met the stopped node are retried on the next one).
func TestZonesSurviveNodeLoss(t *testing.T) {
	e := startDeploymentWith(t, devenv.Options{DataDir: t.TempDir(), LogLevel: "error", Zones: 3})
	defer e.d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if len(e.conn.Nodes) != 3 || e.conn.DeviceEndpoint != e.conn.Nodes[0].DeviceEndpoint {
		t.Fatalf("connection.json nodes = %+v, want three, the first one's device endpoint on top", e.conn.Nodes)
	}
	st, err := e.ctl.RegionStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ZoneRedundant || st.HealthyVoting != 3 || st.Leader == "" {
		t.Fatalf("region status: redundant %t (%s), %d healthy, leader %q", st.ZoneRedundant, st.Reason, st.HealthyVoting, st.Leader)
	}
	v, err := e.ctl.GetInstance(ctx, devenv.DefaultInstance)
	if err != nil || !v.Properties.ZoneRedundant || strings.Join(v.Properties.Zones, ",") != "1,2,3" {
		t.Fatalf("instance properties: zoneRedundant %t zones %v (%v), want true in 1,2,3", v.Properties.ZoneRedundant, v.Properties.Zones, err)
	}

	cfg := bench.DefaultConfig()
	cfg.Conn = e.conn
	// Every device registers once: the same device registering twice at
	// once leaves the older operation "assigning" until it expires.
	cfg.Devices, cfg.Concurrency, cfg.Rounds, cfg.Duration = 3000, 8, 1, 6*time.Second
	cfg.RawStoreCheck = false
	type result struct {
		r   *bench.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := bench.Run(ctx, cfg)
		done <- result{r, err}
	}()

	time.Sleep(2 * time.Second)
	victim := leaderNode(t, e.d.Nodes)
	if victim == e.d.Nodes[0] { // keep node1, whose control API the test uses: move the leadership away
		moveLeader(t, e.d.Nodes[0], e.d.Nodes[1])
		victim = e.d.Nodes[1]
	}
	stopped := time.Now()
	victim.Close()
	t.Logf("stopped %s, the leader, in %v", victim.Config().Name, time.Since(stopped))

	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	r := res.r
	var retried int64
	for _, n := range r.NodeRetries {
		retried += n
	}
	t.Logf("%d assigned of %d attempts, %d failed %v, %d retried on the next node %v, %.1f/s, setup %.1fs, load %.1fs",
		r.Assigned, r.Attempts, r.Failed, r.ErrorSamples, retried, r.NodeRetries, r.RegistrationsPerSecond, r.SetupSeconds, r.ElapsedSeconds)
	if r.Failed != 0 || r.Assigned != r.Attempts || r.First != r.Attempts || r.Attempts < 100 {
		t.Errorf("failed %d, assigned %d of %d, first %d: want every registration to succeed", r.Failed, r.Assigned, r.Attempts, r.First)
	}
	if retried == 0 {
		t.Errorf("no registration was retried on the next node after %s stopped", victim.Config().Name)
	}

	st, err = e.ctl.RegionStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var down []string
	for _, m := range st.Members {
		if !m.Healthy {
			down = append(down, m.Name)
		}
	}
	if strings.Join(down, ",") != victim.Config().Name || !st.Quorum || !st.ZoneRedundant || st.Leader == victim.Config().Name {
		t.Errorf("after stopping %s %v ago: unhealthy %v, quorum %t, zone-redundant %t, leader %q", victim.Config().Name,
			time.Since(stopped).Round(time.Millisecond), down, st.Quorum, st.ZoneRedundant, st.Leader)
	}
}

func leaderNode(t *testing.T, nodes []*node.Node) *node.Node {
	t.Helper()
	for _, n := range nodes {
		if s := n.Store().Etcd().Server; s.Leader() == s.MemberID() {
			return n
		}
	}
	t.Fatal("no node leads")
	return nil
}

// moveLeader hands the leadership of from's member to to's.
func moveLeader(t *testing.T, from, to *node.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := from.Store().Etcd().Server
	if err := s.MoveLeader(ctx, uint64(s.MemberID()), uint64(to.Store().Etcd().Server.MemberID())); err != nil {
		t.Fatal(err)
	}
}
