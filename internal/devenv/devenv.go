// Package devenv starts a complete local opendps deployment in one
// process: the nodes of a region, a hub simulator serving two hubs, and a
// default instance with both hubs linked. `opendps dev` is a thin wrapper;
// end-to-end tests use it directly.
//
// Everything lives in one directory: the shared CA (tls/), each node's data
// (node1/...), the simulator's state (hubs.json), the ports chosen on first
// start (ports.json) and the connection details (connection.json). Started
// again with the same directory, a deployment reuses all of it.
package devenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

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
}

// Deployment is a running dev deployment.
type Deployment struct {
	Nodes []*node.Node
	Hubs  *hubsim.Server
	Conn  *dpsclient.Connection
	// ConnectionPath is DataDir/connection.json.
	ConnectionPath string
	opts           Options
}

// ports remembers the addresses chosen on first start.
type ports struct {
	Device, Service, Control, Console, EtcdClient, EtcdPeer, Hubs string
}

// Start starts the deployment and writes connection.json. On error
// nothing is left running.
func Start(ctx context.Context, opts Options) (d *Deployment, err error) {
	if opts.DataDir == "" {
		return nil, errors.New("devenv: DataDir is required")
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
	d = &Deployment{opts: opts, ConnectionPath: filepath.Join(opts.DataDir, ConnectionFile)}
	defer func() {
		if err != nil {
			d.Close()
			d = nil
		}
	}()
	p, err := loadPorts(opts.DataDir)
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
	n, err := node.Start(ctx, nodeConfig(opts, p))
	if err != nil {
		return nil, err
	}
	d.Nodes = append(d.Nodes, n)
	if err := d.ensureDefaultInstance(ctx); err != nil {
		return nil, fmt.Errorf("devenv: default instance: %w", err)
	}
	if d.Conn, err = d.connection(ctx); err != nil {
		return nil, err
	}
	return d, writeJSON(d.ConnectionPath, d.Conn, 0o600)
}

func nodeConfig(opts Options, p *ports) node.Config {
	c := node.DefaultConfig()
	c.Name = "node1"
	c.Region = opts.Region
	c.Zone = "1"
	c.DataDir = filepath.Join(opts.DataDir, "node1")
	c.CADir = filepath.Join(opts.DataDir, "tls")
	c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = p.Device, p.Service, p.Control, p.Console
	c.EtcdClientAddr, c.EtcdPeerAddr = p.EtcdClient, p.EtcdPeer
	c.ServiceDomain = "localhost"
	c.HostedRegions = []string{"*"} // one region cluster hosts every location until DR adds the paired region
	c.LogLevel = opts.LogLevel
	if opts.Tune != nil {
		opts.Tune(&c)
	}
	return c
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

// loadPorts reads ports.json or picks free loopback ports and saves them,
// so that endpoints (and the etcd member's peer URL) stay stable.
func loadPorts(dir string) (*ports, error) {
	path := filepath.Join(dir, portsFile)
	var p ports
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("devenv: %s: %w", path, err)
		}
		return &p, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, f := range []*string{&p.Device, &p.Service, &p.Control, &p.Console, &p.EtcdClient, &p.EtcdPeer, &p.Hubs} {
		a, err := netutil.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		*f = a
	}
	return &p, writeJSON(path, p, 0o600)
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

// Close stops the nodes and the simulator. It is idempotent.
func (d *Deployment) Close() {
	for _, n := range d.Nodes {
		n.Close()
	}
	if d.Hubs != nil {
		d.Hubs.Close()
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func portInt(addr string) int {
	n, _ := strconv.Atoi(port(addr))
	return n
}
