package region_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// The tests here run real regions in this process: nodes started with
// node.Start on free loopback ports, one etcd member each.

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := netutil.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// regionConfigs returns the configurations of n nodes named n1.. in zones
// 1.. of westeurope, sharing a CA and an operator token, bootstrapping one
// cluster from a static member list.
func regionConfigs(t *testing.T, n int) []node.Config {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.LoadOrCreateCA(filepath.Join(dir, "tls")); err != nil { // before the nodes, which share it
		t.Fatal(err)
	}
	var cfgs []node.Config
	var initial []string
	for i := range n {
		c := node.DefaultConfig()
		c.Name, c.Zone = fmt.Sprintf("n%d", i+1), fmt.Sprint(i+1)
		c.DataDir, c.CADir = filepath.Join(dir, c.Name), filepath.Join(dir, "tls")
		c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0", freeAddr(t), "127.0.0.1:0"
		c.MQTTAddr = ""
		c.EtcdClientAddr, c.EtcdPeerAddr = freeAddr(t), freeAddr(t)
		c.OperatorToken = "region-test-token"
		c.HostedRegions = []string{"*"}
		c.LogLevel = "error"
		initial = append(initial, c.Name+"=http://"+c.EtcdPeerAddr)
		cfgs = append(cfgs, c)
	}
	if n > 1 {
		for i := range cfgs {
			cfgs[i].EtcdInitialCluster = strings.Join(initial, ",")
		}
	}
	return cfgs
}

func startNode(t *testing.T, c node.Config) *node.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := node.Start(ctx, c)
	if err != nil {
		t.Fatalf("start %s: %v", c.Name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startRegion starts the nodes of cfgs together (the members of a new
// cluster wait for each other).
func startRegion(t *testing.T, cfgs []node.Config) []*node.Node {
	t.Helper()
	nodes := make([]*node.Node, len(cfgs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for i, c := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			n, err := node.Start(ctx, c)
			if err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s: %v", c.Name, err))
				mu.Unlock()
				return
			}
			nodes[i] = n
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			t.Cleanup(func() { n.Close() })
		}
	}
	if len(failed) > 0 {
		t.Fatalf("start region: %s", strings.Join(failed, "; "))
	}
	return nodes
}

// eventually polls f every 50 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func status(t *testing.T, n *node.Node) *region.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := n.Region().Status(ctx)
	if err != nil {
		t.Fatalf("status from %s: %v", n.Config().Name, err)
	}
	return st
}

func member(st *region.Status, name string) *region.Member {
	for i := range st.Members {
		if st.Members[i].Name == name {
			return &st.Members[i]
		}
	}
	return nil
}

// httpClient trusts the region's CA.
func httpClient(t *testing.T, n *node.Node) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: n.CA().ClientTLS(), DialContext: netutil.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func getStatus(hc *http.Client, url string) (int, http.Header, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

func putEnrollment(ctx context.Context, n *node.Node, id string) error {
	e := &model.IndividualEnrollment{RegistrationID: id,
		EnrollmentCommon: model.EnrollmentCommon{Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey}}}
	_, err := n.Enrollments().PutEnrollment(ctx, "ztest", e, "")
	return err
}

// TestRegionThreeZones runs a region of three nodes in zones 1, 2 and 3:
// its status, a zone lost and back, a quorum lost and back, and a fourth
// member added and removed at run time.
func TestRegionThreeZones(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-member region")
	}
	cfgs := regionConfigs(t, 3)
	nodes := startRegion(t, cfgs)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Everyone healthy, a leader, zone-redundant, every node registered.
	var st *region.Status
	eventually(t, 10*time.Second, "three healthy members and nodes", func() error {
		st = status(t, nodes[0])
		if st.HealthyVoting != 3 || len(st.Nodes) != 3 || st.Leader == "" {
			return fmt.Errorf("%d healthy, %d nodes, leader %q", st.HealthyVoting, len(st.Nodes), st.Leader)
		}
		return nil
	})
	if !st.ZoneRedundant || strings.Join(st.Zones, ",") != "1,2,3" || !st.Quorum || !st.AvailabilityZones {
		t.Fatalf("status = redundant %t zones %v quorum %t (%s), want zone-redundant in 1,2,3", st.ZoneRedundant, st.Zones, st.Quorum, st.Reason)
	}
	for _, m := range st.Members {
		if m.Node == nil || m.Zone != strings.TrimPrefix(m.Name, "n") || !m.Reachable || m.RaftIndex == 0 {
			t.Errorf("member %+v: want its node, zone, and a raft index", m)
		}
	}

	// Writes through any node; every instance of the region is
	// zone-redundant, without asking.
	v, err := nodes[1].Instances().Create(ctx, instance.Spec{Name: "ztest", Location: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "instance view zone-redundant", func() error {
		v, err = nodes[2].Instances().Get(ctx, "ztest")
		if err != nil || !v.ZoneRedundant || len(v.Zones) != 3 {
			return fmt.Errorf("view %+v, %v", v, err)
		}
		return nil
	})
	if err := putEnrollment(ctx, nodes[2], "before"); err != nil {
		t.Fatal(err)
	}

	// Stop the leader's node: the others elect a leader, report it
	// unhealthy, and keep taking writes.
	leader := indexOf(nodes, st.Leader)
	nodes[leader].Close()
	a, b := nodes[(leader+1)%3], nodes[(leader+2)%3]
	eventually(t, 10*time.Second, "stopped member unhealthy, new leader", func() error {
		st := status(t, a)
		m := member(st, cfgs[leader].Name)
		if m == nil || m.Healthy || st.Leader == "" || st.Leader == cfgs[leader].Name || st.HealthyVoting != 2 || !st.Quorum {
			return fmt.Errorf("leader %q, healthy %d, stopped %+v", st.Leader, st.HealthyVoting, m)
		}
		if !st.ZoneRedundant { // a configuration property: a zone down does not change it
			return fmt.Errorf("zone redundancy lost: %s", st.Reason)
		}
		return nil
	})
	start := time.Now()
	if err := putEnrollment(ctx, a, "during-zone-loss"); err != nil {
		t.Fatalf("write with a zone down: %v", err)
	}
	t.Logf("write with a zone down took %v", time.Since(start))

	// Stop a second node: the last one lost the quorum. It turns not
	// ready, and its device and service listeners answer 503 at once.
	bName := b.Config().Name
	b.Close()
	hc := httpClient(t, a)
	readyz := "https://" + a.Addr(node.ListenerControl) + "/readyz"
	eventually(t, 10*time.Second, "readyz 503 without quorum", func() error {
		if code, _, err := getStatus(hc, readyz); err != nil || code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d %v", code, err)
		}
		return nil
	})
	start = time.Now()
	code, hdr, err := getStatus(hc, "https://"+a.Addr(node.ListenerDevice)+"/0ne00000000/registrations/dev1/register?api-version=2019-03-31")
	if err != nil || code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || time.Since(start) > 2*time.Second {
		t.Errorf("device API without quorum: %d Retry-After %q in %v (%v), want 503 with Retry-After at once", code, hdr.Get("Retry-After"), time.Since(start), err)
	}

	// The second node returns: the quorum is back, the node catches up.
	bIdx := indexOf(nodes, bName)
	nodes[bIdx] = startNode(t, cfgs[bIdx])
	eventually(t, 20*time.Second, "readyz 200 with quorum back", func() error {
		if code, _, err := getStatus(hc, readyz); err != nil || code != http.StatusOK {
			return fmt.Errorf("readyz %d %v", code, err)
		}
		return nil
	})
	if err := putEnrollment(ctx, nodes[bIdx], "after-quorum-back"); err != nil {
		t.Fatal(err)
	}
	// The first stopped node returns and catches up by itself: its own
	// member holds what was written while it was down.
	nodes[leader] = startNode(t, cfgs[leader])
	eventually(t, 20*time.Second, "returning member caught up", func() error {
		for _, id := range []string{"during-zone-loss", "after-quorum-back"} {
			var e model.IndividualEnrollment
			_, _, err := nodes[leader].Store().GetRev(ctx, "/opendps/i/ztest/enr/"+id, &e, true) // served by the local member
			if err != nil || e.RegistrationID != id {
				return fmt.Errorf("local member lacks %s (%v)", id, err)
			}
		}
		return nil
	})

	t.Run("member add and remove", func(t *testing.T) { testMemberAddRemove(t, nodes) })
}

func indexOf(nodes []*node.Node, name string) int {
	for i, n := range nodes {
		if n.Config().Name == name {
			return i
		}
	}
	panic("no node " + name)
}

// testMemberAddRemove adds a fourth member in zone 1 at run time, starts
// its node with the printed flags' values, and removes it again.
func testMemberAddRemove(t *testing.T, nodes []*node.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c4 := regionConfigs(t, 1)[0]
	c4.Name, c4.Zone = "n4", "1"
	var res *region.AddResult
	// etcd refuses the change until every member has been connected for
	// 5 s: one just came back.
	eventually(t, 15*time.Second, "add n4", func() (err error) {
		res, err = nodes[0].Region().Add(ctx, region.AddRequest{Name: "n4", PeerURL: "http://" + c4.EtcdPeerAddr, Zone: "1"})
		return err
	})
	if !strings.Contains(res.InitialCluster, "n4=http://"+c4.EtcdPeerAddr) || !strings.Contains(strings.Join(res.Flags, " "), "--join") {
		t.Fatalf("add result %+v: want n4 in the initial cluster and --join", res)
	}
	if _, err := nodes[0].Region().Add(ctx, region.AddRequest{Name: "n4", PeerURL: "http://" + freeAddr(t)}); !errors.Is(err, region.ErrExists) {
		t.Errorf("adding n4 twice: %v, want ErrExists", err)
	}
	var st *region.Status
	eventually(t, 5*time.Second, "added member seen by another node", func() error { // a serializable view: it may lag
		st = status(t, nodes[1])
		if m := member(st, "n4"); m == nil || m.Started || m.Zone != "1" {
			return fmt.Errorf("n4 before its node started: %+v, want not started, zone 1", m)
		}
		return nil
	})
	c4.EtcdInitialCluster, c4.EtcdClusterState = res.InitialCluster, "existing"
	c4.CADir = nodes[0].Config().CADir
	n4 := startNode(t, c4)
	eventually(t, 20*time.Second, "n4 healthy", func() error {
		st = status(t, nodes[1])
		if m := member(st, "n4"); m == nil || !m.Healthy || m.Node == nil {
			return fmt.Errorf("n4 = %+v", m)
		}
		return nil
	})
	// Zone 1 now holds two of four voting members: losing it would lose
	// the quorum, so the region is no longer zone-redundant.
	if st.ZoneRedundant || !strings.Contains(st.Reason, "zone 1 holds 2 of the 4 voting members") {
		t.Errorf("with n4 in zone 1: redundant %t, reason %q", st.ZoneRedundant, st.Reason)
	}
	// n4 catches up on its own: it has the instance written before it joined.
	eventually(t, 10*time.Second, "n4 caught up", func() error {
		_, _, err := n4.Store().GetRev(ctx, "/opendps/i/ztest/conf", nil, true)
		if rev, _, _ := n4.Store().GetRev(ctx, "/opendps/i/ztest/conf", nil, true); err != nil || rev == 0 {
			return fmt.Errorf("rev %d %v", rev, err)
		}
		return nil
	})

	if _, err := n4.Region().Remove(ctx, "n4", false); !errors.Is(err, region.ErrRefused) {
		t.Errorf("n4 removing itself: %v, want ErrRefused", err)
	}
	if _, err := nodes[0].Region().Remove(ctx, "n9", false); !errors.Is(err, region.ErrNotFound) {
		t.Errorf("removing n9: %v, want ErrNotFound", err)
	}
	// Removed while it runs, n4's member stops and the node reports it.
	if _, err := nodes[0].Region().Remove(ctx, "n4", false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n4.Err():
		t.Logf("n4 after its removal: %v", err)
	case <-time.After(10 * time.Second):
		t.Error("n4 did not report that its member stopped")
	}
	n4.Close()
	st = status(t, nodes[2])
	if len(st.Members) != 3 || !st.ZoneRedundant {
		t.Errorf("after removing n4: %d members, redundant %t (%s)", len(st.Members), st.ZoneRedundant, st.Reason)
	}
}

// TestSnapshotRoundTrip saves a snapshot through the control API of a
// running node and restores it into a new single-member region: the data
// is there.
func TestSnapshotRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nodes")
	}
	cfg := regionConfigs(t, 1)[0]
	n := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.Instances().Create(ctx, instance.Spec{Name: "ztest", Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	if err := putEnrollment(ctx, n, "saved"); err != nil {
		t.Fatal(err)
	}

	ctl := dpsclient.NewControl("https://"+n.Addr(node.ListenerControl), n.OperatorToken(), httpClient(t, n))
	file := filepath.Join(t.TempDir(), "region.snapshot")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	size, err := ctl.Snapshot(ctx, f)
	f.Close()
	if err != nil || size == 0 {
		t.Fatalf("snapshot: %d bytes, %v", size, err)
	}
	info, err := region.InspectSnapshot(file)
	if err != nil || info.TotalKeys == 0 {
		t.Fatalf("inspect: %+v %v", info, err)
	}
	// A write after the snapshot is not in it.
	if err := putEnrollment(ctx, n, "not-saved"); err != nil {
		t.Fatal(err)
	}
	n.Close()

	r := regionConfigs(t, 1)[0]
	r.Name = "r1"
	r.CADir = cfg.CADir
	err = region.Restore(region.RestoreConfig{SnapshotPath: file, DataDir: r.DataDir, Name: r.Name,
		InitialCluster: "r1=http://" + r.EtcdPeerAddr, Region: r.Region})
	if err != nil {
		t.Fatal(err)
	}
	if err := region.Restore(region.RestoreConfig{SnapshotPath: file, DataDir: r.DataDir, Name: r.Name,
		InitialCluster: "r1=http://" + r.EtcdPeerAddr}); !errors.Is(err, region.ErrRefused) {
		t.Errorf("restoring over a member: %v, want ErrRefused", err)
	}
	rn := startNode(t, r)
	if _, err := rn.Instances().Get(ctx, "ztest"); err != nil {
		t.Errorf("restored instance: %v", err)
	}
	if e, err := rn.Enrollments().GetEnrollment(ctx, "ztest", "saved"); err != nil || e.RegistrationID != "saved" {
		t.Errorf("restored enrollment: %+v %v", e, err)
	}
	if _, err := rn.Enrollments().GetEnrollment(ctx, "ztest", "not-saved"); err == nil {
		t.Error("an enrollment written after the snapshot was restored")
	}
	if st := status(t, rn); len(st.Members) != 1 || st.Members[0].Name != "r1" || st.ZoneRedundant {
		t.Errorf("restored region status %+v: want one member r1, not zone-redundant", st)
	}

	// A damaged snapshot is refused.
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.snapshot")
	os.WriteFile(bad, b, 0o600)
	if err := region.Restore(region.RestoreConfig{SnapshotPath: bad, DataDir: t.TempDir(), Name: "r1",
		InitialCluster: "r1=http://" + freeAddr(t)}); err == nil {
		t.Error("a damaged snapshot was restored")
	}
}
