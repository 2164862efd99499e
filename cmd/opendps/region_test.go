package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestServeZoneFlags(t *testing.T) {
	got, err := parseServeFlags(t, "--join", "--etcd-initial-cluster", "a=http://h1:2380,b=http://h2:2380",
		"--etcd-heartbeat", "50ms", "--etcd-election-timeout", "500ms", "--etcd-cluster-token", "tok", "--store-timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	if got.EtcdClusterState != "existing" || got.EtcdHeartbeat != 50*time.Millisecond || got.EtcdElectionTimeout != 500*time.Millisecond ||
		got.EtcdClusterToken != "tok" || got.StoreTimeout != 2*time.Second {
		t.Errorf("config = %+v", got)
	}
	if got, _ := parseServeFlags(t, "--etcd-cluster-state", "existing", "--join=false"); got.EtcdClusterState != "new" {
		t.Errorf("--join=false: state %q, want new", got.EtcdClusterState)
	}
	file := writeConfig(t, `{"etcdClusterState": "existing", "etcdInitialCluster": "a=http://h1:2380"}`)
	if got, _ := parseServeFlags(t, "--config", file); got.EtcdClusterState != "existing" {
		t.Errorf("state from the config file = %q, want existing", got.EtcdClusterState)
	}
	c := node.DefaultConfig()
	c.EtcdClusterState = "existing"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "etcdInitialCluster") {
		t.Errorf("joining without an initial cluster: %v", err)
	}
	c.EtcdClusterState, c.EtcdHeartbeat, c.EtcdElectionTimeout = "", 300*time.Millisecond, time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "5 heartbeats") {
		t.Errorf("election timeout under 5 heartbeats: %v", err)
	}
}

// TestRegionCLI drives `opendps region` against a one-node region: status,
// a learner added and removed, a snapshot saved and restored.
func TestRegionCLI(t *testing.T) {
	free := func() string {
		a, err := netutil.FreeLoopbackAddr()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.DeviceAddr, cfg.ServiceAddr, cfg.ControlAddr, cfg.ConsoleAddr, cfg.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.EtcdClientAddr, cfg.EtcdPeerAddr = free(), free()
	cfg.OperatorToken, cfg.LogLevel = "tok", "error"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	g := []string{"--connection", filepath.Join(t.TempDir(), "none.json"), "--control-url", "https://" + n.Addr(node.ListenerControl),
		"--token", "tok", "--ca-file", filepath.Join(cfg.DataDir, "tls", pki.CAFile)}

	out := mustRun(t, g, "region", "status")
	for _, want := range []string{"region          westeurope", "zone-redundant  no: 1 voting member in 1 zone (1)", "leader          node1", "node1"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	var st dpsclient.RegionStatus
	if err := json.Unmarshal([]byte(mustRun(t, g, "region", "status", "--json")), &st); err != nil || st.Leader != "node1" || len(st.Nodes) != 1 {
		t.Errorf("status --json: %+v %v", st, err)
	}

	peer := "http://" + free()
	out = mustRun(t, g, "region", "member", "add", "node2", "--peer-url", peer, "--zone", "2", "--learner")
	if !strings.Contains(out, "added member node2") || !strings.Contains(out, "--etcd-initial-cluster node1=http://"+cfg.EtcdPeerAddr+",node2="+peer) ||
		!strings.Contains(out, "--zone 2") || !strings.Contains(out, "--join") {
		t.Errorf("member add output:\n%s", out)
	}
	if out := mustRun(t, g, "region", "member", "list"); !strings.Contains(out, "node2") || !strings.Contains(out, "learner") {
		t.Errorf("member list:\n%s", out)
	}
	if _, err := run(t, g, "region", "member", "remove", "node1"); err == nil || !strings.Contains(err.Error(), "last member") && !strings.Contains(err.Error(), "answering") {
		t.Errorf("removing the only voting member: %v", err)
	}
	if out := mustRun(t, g, "region", "member", "remove", "node2"); !strings.Contains(out, "removed member node2") {
		t.Errorf("member remove:\n%s", out)
	}

	file := filepath.Join(t.TempDir(), "snap.db")
	if out := mustRun(t, g, "region", "snapshot", "save", file); !strings.Contains(out, "saved "+file) {
		t.Errorf("snapshot save:\n%s", out)
	}
	dir := t.TempDir()
	out = mustRun(t, nil, "region", "snapshot", "restore", file, "--data-dir", dir, "--name", "r1", "--initial-cluster", "r1=http://"+free())
	if !strings.Contains(out, "restored member r1") {
		t.Errorf("snapshot restore:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member", "snap", "db")); err != nil {
		t.Errorf("restored data: %v", err)
	}
	if _, err := run(t, nil, "region", "snapshot", "restore", file, "--data-dir", dir, "--name", "r1", "--initial-cluster", "r1=http://"+free()); err == nil ||
		!strings.Contains(err.Error(), "exists") {
		t.Errorf("restoring over a member: %v", err)
	}
}
