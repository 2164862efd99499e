// Package devenv starts a complete local opendps deployment: a region of
// nodes, one per availability zone (three by default: a three-member etcd
// cluster), a hub simulator serving two hubs, and a default instance with
// both hubs linked. With several regions (Options.Regions, see
// regions.go) every region is such a cluster, the regions are joined by
// the peer link, a front door passes device and service connections to
// the first healthy region, and a second default instance keeps its data
// in its region (data residency). The nodes run in this process, or each
// in its own child process (`opendps serve`, Options.MultiProcess) so
// that one can be killed to try a zone (or region) failure. `opendps dev` is a thin wrapper; end-to-end
// tests use it directly (in process).
//
// Everything lives in one directory: the shared CA (tls/) and operator
// token (operator-token), each node's data (node1/, node2/, ...), the
// simulator's state (hubs.json), the ports chosen on first start
// (ports.json) and the connection details (connection.json). Started again
// with the same directory, a deployment reuses all of it.
package devenv

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Default names of a dev deployment.
const (
	DefaultInstance = "default"
	DefaultRegion   = "westeurope"
	ConnectionFile  = "connection.json"
	portsFile       = "ports.json"
)

// HubNames are the simulated hubs of a dev deployment.
var HubNames = []string{"hub1.localhost", "hub2.localhost"}

// Options configure a deployment.
type Options struct {
	// DataDir holds everything; required.
	DataDir string
	// Region of the nodes (default westeurope).
	Region string
	// LogLevel of the nodes (default warn).
	LogLevel string
	// Logger for the deployment's own messages; nil discards.
	Logger *slog.Logger
	// Tune, when set, adjusts each node's configuration before it starts
	// (tests use it for small throttle limits or a disabled fast path).
	Tune func(*node.Config)
	// Zones is the number of nodes, node1..nodeN in zones 1..N of the
	// region. 0 means what DataDir was created with, else DefaultZones. A
	// deployment cannot change its number of zones: use another DataDir.
	Zones int
	// MultiProcess starts every node as a child process running
	// `opendps serve --config DATA-DIR/nodeN/node.json`; the deployment
	// never restarts them (kill one to try a zone failure, start it again
	// with its Command).
	MultiProcess bool
	// Executable is the opendps binary of the child processes (default:
	// this process's executable). Args are prepended to the serve
	// arguments (tests use them to re-run their own binary as opendps).
	Executable string
	Args       []string
	// Env is added to the environment of the child processes.
	Env []string
	// Regions, when it names more than one region, runs each as its own
	// etcd cluster of Zones nodes with a peer link between them (see
	// RegionGroup; `opendps dev` passes DefaultRegions). Empty or one
	// region: the single-region deployment of Region (that one) as before.
	Regions []RegionGroup
}

// DefaultZones is the number of zones of a new deployment.
const DefaultZones = 3

// Deployment is a running dev deployment.
type Deployment struct {
	// Nodes are the nodes running in this process (none with
	// MultiProcess), region after region.
	Nodes []*node.Node
	// Procs are the child processes of the nodes (MultiProcess only).
	Procs []*Process
	// Regions are the regions (one for a single-region deployment).
	Regions []*Region
	// FrontDoor runs with several regions (nil with one; frontdoor.go).
	FrontDoor frontDoor
	Hubs      *hubsim.Server
	Conn      *dpsclient.Connection
	// ConnectionPath is DataDir/connection.json.
	ConnectionPath string
	opts           Options
	multi          bool
	errc           chan error
	done           chan struct{} // closed by Close
	closeOnce      sync.Once
}

// ports remembers the addresses chosen on first start.
type ports struct {
	Hubs  string
	Nodes []nodePorts `json:",omitempty"`
	// Regions and FrontDoor: a multi-region deployment (Nodes is empty).
	Regions   map[string][]nodePorts `json:",omitempty"`
	FrontDoor *frontDoorPorts        `json:",omitempty"`
	// node1's addresses in a ports.json written before zones (read, then
	// moved into Nodes).
	Device, Service, Control, Console, EtcdClient, EtcdPeer string `json:",omitempty"`
}

// nodePorts are the addresses of one node.
type nodePorts struct {
	Device, Service, Control, Console, EtcdClient, EtcdPeer string
	MQTT                                                    string `json:",omitempty"` // MQTT over TLS
	Peer                                                    string `json:",omitempty"` // peer link (several regions)
}

// frontDoorPorts are the front door's listeners (several regions).
type frontDoorPorts struct{ Device, MQTT, Service string }

// Region is one region of a deployment: its own etcd cluster.
type Region struct {
	Name string
	// Pair is the catalog's paired region.
	Pair string
	// Nodes run in this process; Procs are child processes (MultiProcess).
	Nodes   []*node.Node
	Procs   []*Process
	dir     string // DATA-DIR, or DATA-DIR/{region} with several regions
	configs []node.Config
}

// Configs returns the configuration of the region's nodes.
func (r *Region) Configs() []node.Config { return r.configs }

// Start starts the deployment and writes connection.json. On error
// nothing is left running.
//
// Ports are picked free on a deployment's first start and bound a moment
// later; another process may take one in between. A brand-new deployment
// that hits that starts over with other ports (at most three times).
func Start(ctx context.Context, opts Options) (*Deployment, error) {
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil || opts.DataDir == "" {
		return start(ctx, opts)
	}
	_, statErr := os.Stat(filepath.Join(dir, portsFile))
	fresh := errors.Is(statErr, os.ErrNotExist)
	for attempt := 1; ; attempt++ {
		d, err := start(ctx, opts)
		if err == nil || !fresh || attempt == 3 || !addrInUse(err) {
			return d, err
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func start(ctx context.Context, opts Options) (d *Deployment, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("devenv: DataDir is required")
	}
	if err := checkGroups(opts.Regions); err != nil {
		return nil, err
	}
	if names := regionNames(opts.Regions); len(names) == 1 {
		opts.Region = names[0]
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DataDir, err = filepath.Abs(opts.DataDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, err
	}
	d = &Deployment{opts: opts, ConnectionPath: filepath.Join(opts.DataDir, ConnectionFile),
		errc: make(chan error, 16), done: make(chan struct{}), multi: opts.multiRegion()}
	partial := d // "return nil, err" clears d before deferred calls run
	defer func() {
		if err != nil {
			partial.Close()
		}
	}()
	var p *ports
	if d.multi {
		p, err = loadPortsMulti(opts.DataDir, regionNames(opts.Regions), opts.Zones)
	} else {
		p, err = loadPorts(opts.DataDir, opts.Zones)
	}
	if err != nil {
		return nil, err
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(opts.DataDir, "tls"))
	if err != nil {
		return nil, err
	}
	if d.Hubs, err = startHubs(opts.DataDir, ca, p.Hubs); err != nil {
		return nil, err
	}
	go d.forward(d.Hubs.Err())
	if d.multi {
		d.Regions, err = multiConfigs(opts, p)
	} else {
		d.Regions, err = singleConfigs(opts, p)
	}
	if err != nil {
		return nil, err
	}
	if opts.MultiProcess {
		err = d.startProcesses(ctx)
	} else {
		err = d.startNodes(ctx)
	}
	if err != nil {
		return nil, err
	}
	if d.multi {
		if err := d.ensureInstances(ctx); err != nil {
			return nil, fmt.Errorf("devenv: default instances: %w", err)
		}
		if err := d.startFrontDoor(ctx, p.FrontDoor); err != nil {
			return nil, fmt.Errorf("devenv: front door: %w", err)
		}
	} else if err := d.ensureDefaultInstance(ctx); err != nil {
		return nil, fmt.Errorf("devenv: default instance: %w", err)
	}
	if d.Conn, err = d.connection(ctx); err != nil {
		return nil, err
	}
	return d, writeJSON(d.ConnectionPath, d.Conn, 0o600)
}

func startHubs(dir string, ca *pki.CA, addr string) (*hubsim.Server, error) {
	sim, err := hubsim.New(hubsim.Config{StateFile: filepath.Join(dir, "hubs.json")})
	if err != nil {
		return nil, err
	}
	for _, h := range HubNames {
		if !sim.HasHub(h) {
			if err := sim.AddHub(hubsim.NewHubConfig(h)); err != nil {
				return nil, err
			}
		}
	}
	tc, err := hubsim.TLSConfig(ca, sim)
	if err != nil {
		return nil, err
	}
	return hubsim.Listen(sim, addr, tc)
}

// loadPorts reads ports.json (picking free loopback ports for what it
// lacks, and saving them) so that endpoints and the etcd members' peer
// URLs stay stable. zones is the number of nodes wanted (0: as the file
// says, else DefaultZones); a deployment whose nodes already have data
// keeps its number.
func loadPorts(dir string, zones int) (*ports, error) {
	path := filepath.Join(dir, portsFile)
	p, err := readPorts(dir)
	if err != nil {
		return nil, err
	}
	if err := singleRegionLayout(p, dir); err != nil {
		return nil, err
	}
	if p.Device != "" && len(p.Nodes) == 0 { // single-node file of an older opendps
		p.Nodes = []nodePorts{{Device: p.Device, Service: p.Service, Control: p.Control, Console: p.Console,
			EtcdClient: p.EtcdClient, EtcdPeer: p.EtcdPeer}}
		p.Device, p.Service, p.Control, p.Console, p.EtcdClient, p.EtcdPeer = "", "", "", "", "", ""
	}
	if zones, err := zonesOf(dir, len(p.Nodes), zones); err != nil {
		return nil, err
	} else if zones < len(p.Nodes) {
		p.Nodes = p.Nodes[:zones]
	} else {
		p.Nodes = append(p.Nodes, make([]nodePorts, zones-len(p.Nodes))...)
	}
	fields := []*string{&p.Hubs}
	for i := range p.Nodes {
		n := &p.Nodes[i]
		fields = append(fields, &n.Device, &n.Service, &n.Control, &n.Console, &n.EtcdClient, &n.EtcdPeer, &n.MQTT)
	}
	for _, f := range fields {
		if *f != "" {
			continue
		}
		a, err := netutil.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		*f = a
	}
	return p, writeJSON(path, p, 0o600)
}

// readPorts reads DIR/ports.json (empty when there is none).
func readPorts(dir string) (*ports, error) {
	path := filepath.Join(dir, portsFile)
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("devenv: %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &p, nil
}

// zonesOf decides the number of nodes: want, unless the directory already
// holds members of another number of nodes (have, from ports.json).
func zonesOf(dir string, have, want int) (int, error) {
	if have > 0 {
		if _, err := os.Stat(filepath.Join(dir, "node1", "etcd")); err == nil {
			if want != 0 && want != have {
				return 0, fmt.Errorf("devenv: %s holds a deployment of %d zone(s); start it with %d zone(s), or use another directory", dir, have, have)
			}
			return have, nil
		}
	}
	if want == 0 {
		want = cmp.Or(have, DefaultZones)
	}
	if want < 1 || want > 9 {
		return 0, fmt.Errorf("devenv: %d zones: want 1 to 9", want)
	}
	return want, nil
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Close stops the front door, the nodes and the simulator. It is
// idempotent. Regions stop side by side; in each, followers stop first
// and the leader once their members have stopped: a leader that stops
// while its peers still run first hands its leadership to one of them,
// which takes seconds when they are stopping too.
func (d *Deployment) Close() {
	d.closeOnce.Do(func() { close(d.done) })
	if d.FrontDoor != nil {
		d.FrontDoor.Close()
	}
	var wg sync.WaitGroup
	for _, r := range d.Regions {
		wg.Go(func() { d.closeRegion(r) })
	}
	wg.Wait()
	if d.Hubs != nil {
		d.Hubs.Close()
	}
}

func (d *Deployment) closeRegion(r *Region) {
	var leader *node.Node
	var stopped []<-chan struct{}
	var wg sync.WaitGroup
	for _, n := range r.Nodes {
		e := n.Store().Etcd()
		if e != nil && leader == nil && e.Server.Leader() == e.Server.MemberID() && len(r.Nodes) > 1 {
			leader = n
			continue
		}
		if e != nil {
			stopped = append(stopped, e.Server.StopNotify())
		}
		wg.Go(func() { n.Close() })
	}
	leaderProc := d.leaderProcess(r)
	for _, p := range r.Procs {
		if p != leaderProc {
			wg.Go(p.Stop)
		}
	}
	if leaderProc != nil {
		wg.Wait() // a child's member stops with its process
		leaderProc.Stop()
	}
	if leader != nil {
		for _, c := range stopped {
			select {
			case <-c:
			case <-time.After(10 * time.Second):
			}
		}
		leader.Close()
	}
	wg.Wait()
}

// Err reports fatal errors of the nodes running in this process and of
// the hub simulator. Child processes that exit are not errors: they are
// logged, and the deployment keeps running.
func (d *Deployment) Err() <-chan error { return d.errc }

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func portInt(addr string) int {
	n, _ := strconv.Atoi(port(addr))
	return n
}
