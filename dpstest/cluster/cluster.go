// Package cluster runs an opendps region of several nodes, each its own OS
// process (`opendps serve` with an embedded etcd member), for fault
// injection tests: kill, freeze, restart and partition a node while the
// test drives the device and service APIs of every node.
//
//	func TestMain(m *testing.M) { cluster.Main(m) }
//
//	func TestZoneLoss(t *testing.T) {
//		c := cluster.New(t, cluster.Config{Nodes: 3, Zones: []string{"1", "2", "3"}, Region: "westeurope"})
//		l, _ := c.Leader(ctx)
//		c.Kill(l)
//		... drive c.Service(i), c.DeviceEndpoint(i) ...
//		c.Start(l)
//		c.WaitHealthy(ctx)
//	}
//
// New builds the binary once per test process (see Binary), starts the
// nodes with a static member list, free ports, a shared CA directory and a
// fixed operator token, waits until every node is ready, starts a hub
// simulator in the test process and creates an instance with its hubs
// linked through the control API. Everything is torn down by t.Cleanup,
// even when the test fails: node process groups are SIGKILLed (and die
// with the test process anyway, by PR_SET_PDEATHSIG on Linux), network
// namespaces removed. On failure the tail of every node's log is printed.
//
// NewRegions (regions.go) runs several such regions side by side, joined by
// the peer link through relays the test can cut, for the disaster suite.
//
// Methods of a Cluster may be called from several goroutines.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Config describes a cluster. Zero fields take the defaults noted.
type Config struct {
	// Nodes is the number of nodes (0: 3).
	Nodes int
	// Zones: node i is in zone Zones[i%len(Zones)] (nil: "1", "2", "3").
	Zones []string
	// Region of every node (default westeurope).
	Region string
	// Instance is the name of the instance New creates (default "fault").
	Instance string
	// Hubs are the simulated hubs linked to the instance (default
	// hub1.localhost and hub2.localhost).
	Hubs []string
	// Network: NetworkAuto (default), NetworkLoopback or
	// NetworkNamespaces; $OPENDPS_CLUSTER_NETWORK overrides it.
	Network Network
	// LogLevel of the nodes (default info).
	LogLevel string
	// ExtraArgs are appended to every node's `opendps serve` arguments.
	ExtraArgs []string
	// ReadyTimeout bounds the start of the cluster and of a restarted
	// node (0: 60s).
	ReadyTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if len(c.Zones) == 0 {
		c.Zones = []string{"1", "2", "3"}
	}
	if c.Region == "" {
		c.Region = "westeurope"
	}
	if c.Instance == "" {
		c.Instance = "fault"
	}
	if len(c.Hubs) == 0 {
		c.Hubs = []string{"hub1.localhost", "hub2.localhost"}
	}
	if env := os.Getenv(NetworkEnv); env != "" {
		c.Network = Network(env)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 60 * time.Second
	}
}

// Cluster is a running region of opendps node processes.
type Cluster struct {
	t     testing.TB
	cfg   Config
	dir   string
	bin   string
	flags map[string]bool // flags `opendps serve` knows
	net   network
	dial  *dialer
	token string
	ca    *pki.CA
	caDir string
	hubs  *hubsim.Server
	hc    *http.Client // service and control APIs
	dhc   *http.Client // device API (HTTP/1.1, device-like TLS)
	etcd  *clientv3.Client

	nodes []*node
	inst  instanceInfo

	// Several regions (regions.go): sh holds what the regions share (nil
	// for a lone region); peers maps every other region to the peer URLs
	// this region's nodes use (--peer), set before the nodes start.
	sh    *shared
	peers map[string]string

	mu sync.Mutex // guards the run state of nodes (proc, frozen, memberID, starts)
}

// node is one node's fixed identity and run state.
type node struct {
	name, zone, ip, dataDir, logPath  string
	members                           string // --etcd-initial-cluster
	device, service, control, console int    // ports
	etcdClient, etcdPeer, mqtt        int
	peer                              int // peer-link listener (several regions only)

	proc     *process // guarded by Cluster.mu; nil when stopped
	frozen   bool     // guarded by Cluster.mu
	memberID uint64   // guarded by Cluster.mu; 0 until known
	starts   int      // guarded by Cluster.mu
}

// New starts a cluster as described by cfg, fails t if it cannot, and
// tears it down when t ends.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cfg.setDefaults()
	c, err := prepare(t, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.launch(); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster: %d nodes up over %s; instance %s (scope %s)", len(c.nodes), c.net.describe(), c.cfg.Instance, c.inst.idScope)
	return c
}

// prepare lays the cluster out (network, CA, token, hubs, ports) without
// starting a node; sh, when set, provides what several regions share.
// The cluster is torn down when t ends.
func prepare(t testing.TB, cfg Config, sh *shared) (*Cluster, error) {
	c := &Cluster{t: t, cfg: cfg, sh: sh}
	if sh != nil {
		c.dir, c.bin, c.flags = filepath.Join(sh.dir, cfg.Region), sh.bin, sh.flags
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, err
		}
	} else {
		c.dir, c.bin = t.TempDir(), Binary(t)
		c.flags = serveFlags(t, c.bin)
	}
	t.Cleanup(c.cleanup)
	return c, c.setup()
}

// launch starts the nodes, creates the instance (a lone region) and waits
// until the cluster is healthy.
func (c *Cluster) launch() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ReadyTimeout)
	defer cancel()
	if err := c.bootstrap(ctx); err != nil {
		return err
	}
	var err error
	if c.etcd, err = clientv3.New(clientv3.Config{Endpoints: c.EtcdEndpoints(), DialTimeout: 2 * time.Second, Logger: quietLogger()}); err != nil {
		return err
	}
	if c.sh == nil {
		if err := c.setupInstance(ctx); err != nil {
			return err
		}
	}
	return c.WaitHealthy(ctx)
}

// bootstrap starts every node and waits until each is ready. On
// loopback a port picked free may be taken by another process before the
// node binds it; then the nodes are laid out again on new ports (at most
// three times).
func (c *Cluster) bootstrap(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := c.startAll(ctx)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
		c.t.Logf("cluster: %v; starting again on other ports", err)
		c.mu.Lock()
		for _, n := range c.nodes {
			if n.proc != nil {
				n.proc.kill()
				n.proc = nil
			}
			os.RemoveAll(n.dataDir)
		}
		c.nodes = nil
		c.mu.Unlock()
		if err := c.layoutNodes(); err != nil {
			return err
		}
	}
}

func (c *Cluster) startAll(ctx context.Context) error {
	for i := range c.nodes {
		if err := c.Start(i); err != nil {
			return err
		}
	}
	ready := make([]bool, len(c.nodes))
	for {
		all := true
		for i, n := range c.nodes {
			if !c.Running(i) {
				return fmt.Errorf("cluster: %s exited while starting; log %s:\n%s", n.name, n.logPath, tail(n.logPath, 20))
			}
			if !ready[i] {
				ready[i] = c.Ready(ctx, i) == nil
				all = all && ready[i]
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: nodes not ready in time (ready: %v)", ready)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) setup() error {
	var err error
	if c.net, err = c.chooseNetwork(); err != nil {
		return err
	}
	if c.sh != nil {
		c.caDir, c.ca, c.token, c.hubs = c.sh.caDir, c.sh.ca, c.sh.token, c.sh.hubs
		if err := c.net.forward(c.hubs.Port()); err != nil {
			return err
		}
	} else {
		c.caDir = filepath.Join(c.dir, "ca")
		// Created here, before any node starts: nodes sharing the directory
		// would otherwise race to create different CAs.
		if c.ca, err = pki.LoadOrCreateCA(c.caDir); err != nil {
			return err
		}
		tok := make([]byte, 16)
		rand.Read(tok)
		c.token = hex.EncodeToString(tok)
		if err := c.startHubs(); err != nil {
			return err
		}
	}
	if err := c.layoutNodes(); err != nil {
		return err
	}
	c.clients()
	return nil
}

func (c *Cluster) chooseNetwork() (network, error) {
	switch c.cfg.Network {
	case NetworkLoopback:
		return loopback{}, nil
	case NetworkNamespaces:
		return newNetns(c.cfg.Nodes)
	case NetworkAuto:
		nw, err := newNetns(c.cfg.Nodes)
		if err != nil {
			c.t.Logf("cluster: no network namespaces (%v): nodes share loopback, Partition is unavailable", err)
			return loopback{}, nil
		}
		return nw, nil
	}
	return nil, fmt.Errorf("cluster: unknown network %q", c.cfg.Network)
}

func (c *Cluster) startHubs() error {
	sim, err := hubsim.New(hubsim.Config{StateFile: filepath.Join(c.dir, "hubs.json")})
	if err != nil {
		return err
	}
	for _, h := range c.cfg.Hubs {
		if err := sim.AddHub(hubsim.NewHubConfig(h)); err != nil {
			return err
		}
	}
	tc, err := hubsim.TLSConfig(c.ca, sim)
	if err != nil {
		return err
	}
	if c.hubs, err = hubsim.Listen(sim, "127.0.0.1:0", tc); err != nil {
		return err
	}
	return c.net.forward(c.hubs.Port())
}

// layoutNodes assigns names, zones, addresses and data directories.
// Ports are picked free on loopback, so they are unique across nodes and
// the client dialer can map a port back to its node.
func (c *Cluster) layoutNodes() error {
	if c.dial == nil {
		c.dial = &dialer{}
	}
	c.dial.byPort = map[string]string{} // the HTTP clients hold c.dial: keep the pointer
	var members []string
	var nodes []*node
	for i := range c.cfg.Nodes {
		n := &node{name: fmt.Sprintf("node%d", i+1), zone: c.cfg.Zones[i%len(c.cfg.Zones)], ip: c.net.ip(i)}
		n.dataDir = filepath.Join(c.dir, n.name)
		n.logPath = filepath.Join(c.dir, n.name+".log")
		ports := []*int{&n.device, &n.service, &n.control, &n.console, &n.etcdClient, &n.etcdPeer, &n.mqtt}
		if c.sh != nil {
			ports = append(ports, &n.peer)
		}
		for _, p := range ports {
			for *p == 0 || c.dial.byPort[strconv.Itoa(*p)] != "" { // a port freed a moment ago may come back
				a, err := netutil.FreeLoopbackAddr()
				if err != nil {
					return err
				}
				*p = portOf(a)
			}
			c.dial.byPort[strconv.Itoa(*p)] = n.ip
		}
		members = append(members, n.name+"=http://"+n.addr(n.etcdPeer))
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.members = strings.Join(members, ",")
	}
	c.mu.Lock() // peerAddr reads c.nodes from proxy goroutines
	c.nodes = nodes
	c.mu.Unlock()
	return nil
}

func (n *node) addr(port int) string { return net.JoinHostPort(n.ip, strconv.Itoa(port)) }

// args are the node's `opendps serve` arguments.
func (c *Cluster) args(n *node) []string {
	a := []string{"serve",
		"--name", n.name, "--region", c.cfg.Region, "--zone", n.zone,
		"--data-dir", n.dataDir, "--ca-dir", c.caDir,
		"--device-addr", n.addr(n.device), "--service-addr", n.addr(n.service),
		"--control-addr", n.addr(n.control), "--console-addr", n.addr(n.console),
		"--etcd-client-addr", n.addr(n.etcdClient), "--etcd-peer-addr", n.addr(n.etcdPeer),
		"--etcd-initial-cluster", n.members,
		"--operator-token", c.token, "--log-level", c.cfg.LogLevel,
	}
	if c.flags["mqtt-addr"] { // MQTT listens on all interfaces by default
		a = append(a, "--mqtt-addr", n.addr(n.mqtt))
	}
	if n.peer != 0 {
		a = append(a, "--peer-addr", n.addr(n.peer))
		for _, r := range slices.Sorted(maps.Keys(c.peers)) {
			a = append(a, "--peer", r+"="+c.peers[r])
		}
	}
	return append(a, c.cfg.ExtraArgs...)
}

// cleanup kills every node, then removes what the harness set up. It
// runs from t.Cleanup, also after a failure.
func (c *Cluster) cleanup() {
	if c.net != nil {
		// Heal first: sockets of killed nodes still talking to a
		// blackholed peer would keep their namespace alive for minutes.
		for i := range c.nodes {
			c.Heal(i)
		}
	}
	c.mu.Lock()
	procs := make([]*process, 0, len(c.nodes))
	for _, n := range c.nodes {
		if n.proc != nil {
			procs = append(procs, n.proc)
			n.proc = nil
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		if err := p.kill(); err != nil {
			c.t.Error(err)
		}
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
	if c.hubs != nil && c.sh == nil {
		c.hubs.Close()
	}
	if c.net != nil {
		c.net.close()
	}
	if c.t.Failed() {
		for _, n := range c.nodes {
			c.t.Logf("cluster: last lines of %s/%s (%s):\n%s", c.cfg.Region, n.name, n.logPath, tail(n.logPath, 40))
		}
	}
}

// tail returns the last lines of the file at path.
func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 256<<10 {
		b = b[len(b)-256<<10:]
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Start starts node i, which must be stopped; it does not wait for the
// node to be ready (see WaitReady).
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("cluster: %s is running", n.name)
	}
	n.starts++
	p, err := startProcess(c.net.command(i, c.bin, c.args(n)), n.logPath, fmt.Sprintf("start #%d of %s", n.starts, n.name))
	if err != nil {
		return fmt.Errorf("cluster: start %s: %w", n.name, err)
	}
	n.proc, n.frozen = p, false
	return nil
}

// Kill SIGKILLs node i (its whole process group) and waits for it to die.
func (c *Cluster) Kill(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	err = p.kill()
	c.mu.Lock()
	c.nodes[i].frozen = false
	c.mu.Unlock()
	return err
}

// Stop stops node i gracefully (SIGTERM; SIGKILL after 20s).
func (c *Cluster) Stop(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	p.signal(syscall.SIGTERM)
	p.signal(syscall.SIGCONT) // a frozen node must run to stop
	if !p.wait(20 * time.Second) {
		c.t.Logf("cluster: %s ignored SIGTERM for 20s; killing it", c.nodes[i].name)
		return p.kill()
	}
	c.mu.Lock()
	c.nodes[i].frozen = false
	c.mu.Unlock()
	return nil
}

// Restart stops node i gracefully if it runs, starts it and waits until
// it is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.Running(i) {
		if err := c.Stop(i); err != nil {
			return err
		}
	}
	if err := c.Start(i); err != nil {
		return err
	}
	return c.WaitReady(ctx, i)
}

// Freeze SIGSTOPs node i: it keeps its sockets but answers nothing.
func (c *Cluster) Freeze(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i].frozen = true
	c.mu.Unlock()
	return nil
}

// Thaw SIGCONTs node i after Freeze.
func (c *Cluster) Thaw(i int) error {
	p, err := c.running(i)
	if err != nil {
		return err
	}
	if err := p.signal(syscall.SIGCONT); err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i].frozen = false
	c.mu.Unlock()
	return nil
}

// CanPartition reports whether Partition is available (network
// namespaces).
func (c *Cluster) CanPartition() bool { return c.net.partitions() }

// Partition cuts node i off from every node of another zone, in both
// directions, while clients keep reaching it. It returns
// ErrPartitionUnsupported on loopback.
func (c *Cluster) Partition(i int) error {
	for j, n := range c.nodes {
		if j != i && n.zone != c.nodes[i].zone {
			if err := c.net.cut(i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// Heal undoes Partition(i).
func (c *Cluster) Heal(i int) error {
	var errs []error
	for j := range c.nodes {
		if j != i {
			if err := c.net.mend(i, j); err != nil && !errors.Is(err, ErrPartitionUnsupported) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Running reports whether node i's process runs (frozen or not).
func (c *Cluster) Running(i int) bool {
	_, err := c.running(i)
	return err == nil
}

// Frozen reports whether node i is frozen.
func (c *Cluster) Frozen(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].frozen
}

func (c *Cluster) running(i int) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.proc == nil || n.proc.exited() {
		return nil, fmt.Errorf("cluster: %s is not running", n.name)
	}
	return n.proc, nil
}

// exitStatus says how node i's last process ended ("never started" if
// none ran).
func (c *Cluster) exitStatus(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.nodes[i].proc; p != nil {
		return p.exitStatus()
	}
	return "stopped"
}

// PID returns node i's process id, 0 when it is not running.
func (c *Cluster) PID(i int) int {
	p, err := c.running(i)
	if err != nil {
		return 0
	}
	return p.pid()
}
