package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
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
	skipMultiProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, conn := startMultiProcessDev(ctx, t, devenv.Options{Zones: 3})
	defer d.Close()
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
	cmd.Env = append(os.Environ(), devChildEnv...)
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

// devChildEnv is the environment of a multi-process dev deployment's
// processes: this test binary runs main() as opendps.
var devChildEnv = []string{mainHelperEnv + "=1", "OPENDPS_OPERATOR_TOKEN="}

// skipMultiProcess skips tests of multi-process dev deployments where they
// cannot run: they need SIGKILL and process groups, and start several
// server processes.
func skipMultiProcess(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs SIGKILL and process groups")
	}
	if testing.Short() {
		t.Skip("starts several server processes")
	}
}

// startMultiProcessDev starts the dev deployment opts describes with every
// process this test binary re-run as opendps (under a new temporary
// directory, logging errors only) and loads its connection.json. The
// caller closes the deployment.
func startMultiProcessDev(ctx context.Context, t *testing.T, opts devenv.Options) (*devenv.Deployment, *dpsclient.Connection) {
	t.Helper()
	opts.LogLevel, opts.MultiProcess = "error", true
	opts.Executable, opts.Env = os.Args[0], devChildEnv
	opts.Args = []string{"-test.run=^TestMainHelperProcess$", "-test.count=1", "--"}
	var d *devenv.Deployment
	var err error
	for range 3 { // ports are picked free, then bound by the children: another test may take one meanwhile
		opts.DataDir = t.TempDir()
		if d, err = devenv.Start(ctx, opts); err == nil {
			break
		}
		t.Logf("start: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dpsclient.LoadConnection(d.ConnectionPath)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return d, conn
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

// TestDevRegionsMultiProcess runs two paired regions of one zone each
// with every node and the front door in its own process, checks that
// connection.json gives each its pid, command and region, then kills the
// whole first region as a laptop user would (its pids) and checks that the
// other region and the front door keep answering.
func TestDevRegionsMultiProcess(t *testing.T) {
	skipMultiProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, conn := startMultiProcessDev(ctx, t, devenv.Options{Zones: 1, Regions: []devenv.RegionGroup{{"westeurope", "northeurope"}}})
	defer d.Close()
	pids := map[int]string{}
	for _, n := range conn.Nodes {
		if n.PID == os.Getpid() || n.PID == 0 || len(n.Command) == 0 || n.Region == "" {
			t.Fatalf("node %s/%s: pid %d, command %q: want a child process, its command and region", n.Region, n.Name, n.PID, n.Command)
		}
		pids[n.PID] = n.Region
	}
	fd := conn.FrontDoor
	if fd == nil || fd.PID == os.Getpid() || fd.PID == 0 || len(fd.Command) == 0 || pids[fd.PID] != "" {
		t.Fatalf("front door %+v: want its own child process and command", fd)
	}
	if len(conn.Nodes) != 2 || len(pids) != 2 || conn.DeviceEndpoint != fd.DeviceEndpoint {
		t.Fatalf("connection.json nodes = %+v, device endpoint %s: want two processes and the front door's endpoint", conn.Nodes, conn.DeviceEndpoint)
	}
	hc, err := dpsclient.HTTPClient(conn.CACertificate)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := dpsclient.NewService(conn.ServiceConnectionString, hc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.QueryEnrollments(ctx, 1, ""); err != nil {
		t.Fatalf("service API through the front door: %v", err)
	}

	// West Europe is lost: kill its node by the pid connection.json gives.
	for pid, region := range pids {
		if region == "westeurope" {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	ne := dpsclient.NewControl(conn.RegionControl("northeurope")[0], conn.OperatorToken, hc)
	waitRegion(t, ne, "northeurope healthy", func(st *dpsclient.RegionStatus) bool { return st.Quorum })
	// The front door now passes the device API to North Europe: a TLS
	// handshake through it completes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		tc, err := dpsclient.DeviceTLSConfig(conn.CACertificate, nil)
		if err != nil {
			t.Fatal(err)
		}
		tc.ServerName = "localhost"
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", "127.0.0.1"+fd.DeviceEndpoint[strings.LastIndex(fd.DeviceEndpoint, ":"):], tc)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("front door with westeurope lost: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
