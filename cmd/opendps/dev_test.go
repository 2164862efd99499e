package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestDevMultiProcess runs a three-zone dev deployment with every node in
// its own process (this test binary re-run as opendps), kills one node as
// a zone failure would, checks that the region notices and keeps serving,
// and starts the node again with the command connection.json gives.
func TestDevMultiProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs SIGKILL and process groups")
	}
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := []string{mainHelperEnv + "=1", "OPENDPS_OPERATOR_TOKEN="}
	var d *devenv.Deployment
	var err error
	for range 3 { // ports are picked free, then bound by the children: another test may take one meanwhile
		d, err = devenv.Start(ctx, devenv.Options{DataDir: t.TempDir(), LogLevel: "error", MultiProcess: true, Zones: 3,
			Executable: os.Args[0], Args: []string{"-test.run=^TestMainHelperProcess$", "-test.count=1", "--"}, Env: env})
		if err == nil {
			break
		}
		t.Logf("start: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	conn, err := dpsclient.LoadConnection(d.ConnectionPath)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, n := range conn.Nodes {
		if n.PID == os.Getpid() || n.PID == 0 || len(n.Command) == 0 {
			t.Fatalf("node %s: pid %d, command %q: want a child process and its command", n.Name, n.PID, n.Command)
		}
		pids[n.PID] = true
	}
	if len(conn.Nodes) != 3 || len(pids) != 3 {
		t.Fatalf("connection.json nodes = %+v, want three processes", conn.Nodes)
	}
	hc, err := dpsclient.HTTPClient(conn.CACertificate)
	if err != nil {
		t.Fatal(err)
	}
	ctl := dpsclient.NewControl(conn.ControlEndpoint, conn.OperatorToken, hc)
	waitRegion(t, ctl, "three healthy members", func(st *dpsclient.RegionStatus) bool {
		return st.HealthyVoting == 3 && st.ZoneRedundant
	})

	// A zone fails: SIGKILL node3. Nothing restarts it.
	victim := conn.Nodes[2]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.Procs[2].Exited()
	waitRegion(t, ctl, "node3 unhealthy, quorum kept", func(st *dpsclient.RegionStatus) bool {
		for _, m := range st.Members {
			if m.Name == victim.Name {
				return !m.Healthy && st.Quorum && st.HealthyVoting == 2
			}
		}
		return false
	})
	if _, err := ctl.SetPolicy(ctx, conn.InstanceName, "during-zone-loss", "EnrollmentRead", true); err != nil {
		t.Fatalf("write with a zone down: %v", err)
	}

	// Start it again as connection.json says: it rejoins and catches up.
	cmd := exec.Command(victim.Command[0], victim.Command[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	waitRegion(t, ctl, "node3 back", func(st *dpsclient.RegionStatus) bool { return st.HealthyVoting == 3 })
}

// waitRegion polls the region status until ok accepts it (30 s at most).
func waitRegion(t *testing.T, ctl *dpsclient.Control, what string, ok func(*dpsclient.RegionStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := ctl.RegionStatus(ctx)
		cancel()
		if err == nil && ok(st) {
			return
		}
		last = fmt.Sprintf("%+v %v", st, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within 30s; last status %s", what, last)
}
