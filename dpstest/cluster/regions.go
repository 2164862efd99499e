package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Several regions (docs/dr-design.md), for the disaster suite: every
// region is a Cluster of its own (its own etcd cluster, network and
// ports), all sharing one CA, operator token and hub simulator, their
// nodes joined by the peer link. Each region's nodes reach another
// region's peer listeners through a relay in the test process (one per
// direction and node), so CutLink can sever the link between two regions
// in both directions while clients keep reaching both.
//
//	rs := cluster.NewRegions(t, cluster.RegionsConfig{
//		Regions:   []string{"westeurope", "northeurope", "brazilsouth"},
//		Instances: []cluster.InstanceConfig{{Name: "drinstance", Region: "westeurope"},
//			{Name: "canary", Region: "brazilsouth", DataResidency: true}},
//	})
//	rs.KillRegion("westeurope")           // every node, SIGKILL
//	rs.Region("northeurope").Control(0)   // ... region failover ...
//	rs.StartRegion(ctx, "westeurope")     // it comes back
//	rs.CutLink("westeurope", "northeurope")
//	fd, _ := rs.StartFrontDoor()           // the global endpoint, in the test process

// RegionsConfig describes several regions. Zero fields take the defaults
// noted.
type RegionsConfig struct {
	// Regions to run (default westeurope and northeurope, a pair).
	Regions []string
	// Nodes per region (0: 3) and their zones (nil: "1", "2", "3").
	Nodes int
	Zones []string
	// Instances to create (default one, "drinstance", in the first region).
	Instances []InstanceConfig
	// Hubs, Network, LogLevel, ExtraArgs, ReadyTimeout: as in Config,
	// for every region.
	Hubs         []string
	Network      Network
	LogLevel     string
	ExtraArgs    []string
	ReadyTimeout time.Duration
}

// InstanceConfig is an instance NewRegions creates through the control
// API of its region, with every hub linked.
type InstanceConfig struct {
	Name, Region  string
	DataResidency bool
}

// shared is what the regions of a Regions share.
type shared struct {
	dir, caDir string
	ca         *pki.CA
	token      string
	hubs       *hubsim.Server
	bin        string
	flags      map[string]bool
}

// Regions is a running set of regions.
type Regions struct {
	t       testing.TB
	cfg     RegionsConfig
	sh      *shared
	regions []*Cluster
	// links[[2]string{from, to}] relays from's nodes to to's peer
	// listeners, one per node of to.
	links map[[2]string][]*linkProxy

	mu    sync.Mutex
	insts map[string]InstanceInfo
}

// InstanceInfo is what NewRegions learnt about an instance it created.
type InstanceInfo struct {
	Name, Region, IDScope string
	DataResidency         bool
	// KeyName and Key are the owner policy's.
	KeyName, Key string
	// Hubs are the host:port of the linked hubs.
	Hubs []string
}

// NewRegions starts the regions of cfg side by side, links them, creates
// the instances, fails t if it cannot and tears everything down when t
// ends.
func NewRegions(t testing.TB, cfg RegionsConfig) *Regions {
	t.Helper()
	rs, err := newRegions(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func newRegions(t testing.TB, cfg RegionsConfig) (*Regions, error) {
	if len(cfg.Regions) == 0 {
		cfg.Regions = []string{"westeurope", "northeurope"}
	}
	if len(cfg.Instances) == 0 {
		cfg.Instances = []InstanceConfig{{Name: "drinstance", Region: cfg.Regions[0]}}
	}
	rs := &Regions{t: t, cfg: cfg, links: map[[2]string][]*linkProxy{}, insts: map[string]InstanceInfo{}}
	seen := map[string]bool{}
	for _, r := range cfg.Regions {
		if seen[r] {
			return nil, fmt.Errorf("cluster: region %s listed twice", r)
		}
		seen[r] = true
	}
	for _, in := range cfg.Instances {
		if !seen[in.Region] {
			return nil, fmt.Errorf("cluster: instance %s: region %s is not run", in.Name, in.Region)
		}
	}
	// Registered first, so it runs last: after every region's nodes died.
	t.Cleanup(rs.cleanup)
	sh := &shared{dir: t.TempDir(), bin: Binary(t)}
	sh.flags = serveFlags(t, sh.bin)
	if !sh.flags["peer-addr"] {
		return nil, errors.New("cluster: this opendps serve has no --peer-addr")
	}
	sh.caDir = filepath.Join(sh.dir, "ca")
	var err error
	if sh.ca, err = pki.LoadOrCreateCA(sh.caDir); err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	sh.token = hex.EncodeToString(tok)
	hubCfg := Config{Hubs: cfg.Hubs}
	hubCfg.setDefaults()
	sim, err := hubsim.New(hubsim.Config{StateFile: filepath.Join(sh.dir, "hubs.json")})
	if err != nil {
		return nil, err
	}
	for _, h := range hubCfg.Hubs {
		if err := sim.AddHub(hubsim.NewHubConfig(h)); err != nil {
			return nil, err
		}
	}
	tc, err := hubsim.TLSConfig(sh.ca, sim)
	if err != nil {
		return nil, err
	}
	if sh.hubs, err = hubsim.Listen(sim, "127.0.0.1:0", tc); err != nil {
		return nil, err
	}
	rs.sh = sh

	for _, r := range cfg.Regions {
		c := Config{Nodes: cfg.Nodes, Zones: cfg.Zones, Region: r, Instance: "-", Hubs: hubCfg.Hubs,
			Network: cfg.Network, LogLevel: cfg.LogLevel, ExtraArgs: cfg.ExtraArgs, ReadyTimeout: cfg.ReadyTimeout}
		c.setDefaults()
		cl, err := prepare(t, c, sh)
		if err != nil {
			return nil, fmt.Errorf("cluster: region %s: %w", r, err)
		}
		rs.regions = append(rs.regions, cl)
	}
	if err := rs.link(); err != nil {
		return nil, err
	}
	errs := make([]error, len(rs.regions))
	var wg sync.WaitGroup
	for i, cl := range rs.regions {
		wg.Go(func() {
			if err := cl.launch(); err != nil {
				errs[i] = fmt.Errorf("cluster: region %s: %w", cl.cfg.Region, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, in := range cfg.Instances {
		if err := rs.createInstance(ctx, in); err != nil {
			return nil, fmt.Errorf("cluster: instance %s in %s: %w", in.Name, in.Region, err)
		}
	}
	var insts []string
	for _, in := range cfg.Instances {
		insts = append(insts, fmt.Sprintf("%s in %s (scope %s)", in.Name, in.Region, rs.insts[in.Name].IDScope))
	}
	t.Logf("cluster: regions %s up (%d nodes each over %s); instances %s", strings.Join(cfg.Regions, ", "),
		rs.regions[0].N(), rs.regions[0].net.describe(), strings.Join(insts, ", "))
	return rs, nil
}

// link creates the relays of every ordered pair of regions and sets each
// region's --peer URLs to its relays.
func (rs *Regions) link() error {
	for _, from := range rs.regions {
		from.peers = map[string]string{}
		for _, to := range rs.regions {
			if to == from {
				continue
			}
			var urls []string
			for j := range to.N() {
				p, err := newLinkProxy(func() string { return to.peerAddr(j) })
				if err != nil {
					return err
				}
				rs.links[[2]string{from.cfg.Region, to.cfg.Region}] = append(rs.links[[2]string{from.cfg.Region, to.cfg.Region}], p)
				// Inside from's namespaces, 127.0.0.1:port reaches the relay.
				if err := from.net.forward(p.port()); err != nil {
					return err
				}
				urls = append(urls, "https://127.0.0.1:"+strconv.Itoa(p.port()))
			}
			from.peers[to.cfg.Region] = strings.Join(urls, ",")
		}
	}
	return nil
}

// peerAddr is node i's peer listener (ip:port), as the test process
// reaches it.
func (c *Cluster) peerAddr(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	return n.addr(n.peer)
}

func (rs *Regions) cleanup() {
	for _, ps := range rs.links {
		for _, p := range ps {
			p.close()
		}
	}
	if rs.sh != nil && rs.sh.hubs != nil {
		rs.sh.hubs.Close()
	}
}

func (rs *Regions) createInstance(ctx context.Context, in InstanceConfig) error {
	cl := rs.Region(in.Region)
	var final error // a client error: retrying cannot help
	err := retry(ctx, func(ctx context.Context) error {
		if final != nil {
			return nil
		}
		ctl := cl.Control(0)
		spec := dpsclient.InstanceSpec{Location: in.Region}
		if in.DataResidency {
			spec.EnableDataResidency = &in.DataResidency
		}
		info := InstanceInfo{Name: in.Name, Region: in.Region}
		for _, h := range cl.cfg.Hubs {
			cs, err := rs.sh.hubs.ConnectionString(h)
			if err != nil {
				return err
			}
			spec.IotHubs = append(spec.IotHubs, dpsclient.IotHub{ConnectionString: cs, Location: in.Region})
			info.Hubs = append(info.Hubs, dpsclient.ConnectionStringHost(cs))
		}
		// The create may stop half way (the DR start gate answers 503 until
		// the region has contacted its secondary): link what is missing.
		v, err := ctl.GetInstance(ctx, in.Name)
		var ce *dpsclient.ControlError
		if errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound {
			v, err = ctl.CreateInstance(ctx, in.Name, spec)
		}
		if err == nil {
			linked := map[string]bool{}
			for _, h := range v.Properties.IotHubs {
				linked[dpsclient.ConnectionStringHost(h.ConnectionString)] = true
			}
			for _, h := range spec.IotHubs {
				if err == nil && !linked[dpsclient.ConnectionStringHost(h.ConnectionString)] {
					_, err = ctl.LinkHub(ctx, in.Name, h)
				}
			}
		}
		if errors.As(err, &ce) && ce.StatusCode >= 400 && ce.StatusCode < 500 {
			final = err
			return nil
		}
		if err != nil {
			return err
		}
		keys, err := ctl.GetKeys(ctx, in.Name, model.OwnerPolicy)
		if err != nil {
			return err
		}
		info.IDScope, info.DataResidency = v.Properties.IDScope, v.Properties.EnableDataResidency
		info.KeyName, info.Key = keys.KeyName, keys.PrimaryKey
		rs.mu.Lock()
		rs.insts[in.Name] = info
		rs.mu.Unlock()
		return nil
	})
	if final != nil {
		return final
	}
	return err
}

// Names returns the regions in order.
func (rs *Regions) Names() []string { return append([]string(nil), rs.cfg.Regions...) }

// Region returns the cluster of region name; it panics for a region that
// is not run.
func (rs *Regions) Region(name string) *Cluster {
	for _, c := range rs.regions {
		if c.cfg.Region == name {
			return c
		}
	}
	panic("cluster: no region " + name)
}

// Instance returns what NewRegions learnt about instance name.
func (rs *Regions) Instance(name string) InstanceInfo {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.insts[name]
}

// CAFile returns the PEM file of the CA shared by every region.
func (rs *Regions) CAFile() string { return filepath.Join(rs.sh.caDir, pki.CAFile) }

// OperatorToken returns the control API credential of every node.
func (rs *Regions) OperatorToken() string { return rs.sh.token }

// Hubs returns the hub simulator shared by the regions.
func (rs *Regions) Hubs() *hubsim.Sim { return rs.sh.hubs.Sim() }

// ServiceHost returns the service API host of instance on node i of
// region: "{instance}.localhost:port".
func (rs *Regions) ServiceHost(instance, region string, i int) string {
	return instance + ".localhost:" + strconv.Itoa(rs.Region(region).nodes[i].service)
}

// ServiceConnectionString returns the owner connection string of
// instance through node i of region.
func (rs *Regions) ServiceConnectionString(instance, region string, i int) string {
	in := rs.Instance(instance)
	return fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", rs.ServiceHost(instance, region, i), in.KeyName, in.Key)
}

// Service returns a service API client of instance through node i of
// region (whichever region is primary: a node forwards what it does not
// own).
func (rs *Regions) Service(instance, region string, i int) *dpsclient.Service {
	s, err := dpsclient.NewService(rs.ServiceConnectionString(instance, region, i), rs.Region(region).hc)
	if err != nil {
		panic(err) // the connection string is built here
	}
	return s
}

// PeerURL returns node i's peer listener URL as the test process reaches
// it directly (not through a relay).
func (c *Cluster) PeerURL(i int) string { return "https://" + c.peerAddr(i) }

// Peers returns the --peer URLs of this region's nodes (relays), by
// region.
func (c *Cluster) Peers() map[string]string {
	out := map[string]string{}
	for k, v := range c.peers {
		out[k] = v
	}
	return out
}

// Region returns the cluster's region.
func (c *Cluster) Region() string { return c.cfg.Region }

// KillRegion SIGKILLs every running node of region at once (a region
// lost) and waits for them to die.
func (rs *Regions) KillRegion(region string) error { return rs.Region(region).KillAll() }

// StopRegion stops every running node of region gracefully.
func (rs *Regions) StopRegion(region string) error { return rs.Region(region).StopAll() }

// StartRegion starts every stopped node of region and waits until each
// is ready.
func (rs *Regions) StartRegion(ctx context.Context, region string) error {
	return rs.Region(region).StartAll(ctx)
}

// CutLink severs the peer link between regions a and b in both
// directions: open connections are closed and new ones refused. Clients
// still reach both regions.
func (rs *Regions) CutLink(a, b string) error { return rs.setLink(a, b, true) }

// MendLink restores the peer link between a and b.
func (rs *Regions) MendLink(a, b string) error { return rs.setLink(a, b, false) }

func (rs *Regions) setLink(a, b string, cut bool) error {
	ab, ba := rs.links[[2]string{a, b}], rs.links[[2]string{b, a}]
	if len(ab) == 0 || len(ba) == 0 {
		return fmt.Errorf("cluster: no peer link between %s and %s", a, b)
	}
	for _, p := range append(ab, ba...) {
		p.setCut(cut)
	}
	return nil
}

// LinkCut reports whether the link from a to b is cut.
func (rs *Regions) LinkCut(a, b string) bool {
	ps := rs.links[[2]string{a, b}]
	if len(ps) == 0 {
		return false
	}
	ps[0].mu.Lock()
	defer ps[0].mu.Unlock()
	return ps[0].cut
}

// KillAll SIGKILLs every running node at once and waits for them.
func (c *Cluster) KillAll() error {
	return c.eachRunning(c.Kill)
}

// StopAll stops every running node gracefully, at once.
func (c *Cluster) StopAll() error {
	return c.eachRunning(c.Stop)
}

func (c *Cluster) eachRunning(f func(int) error) error {
	errs := make([]error, c.N())
	var wg sync.WaitGroup
	for i := range c.N() {
		if c.Running(i) {
			wg.Go(func() { errs[i] = f(i) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartAll starts every node that is not running and waits until every
// node is ready.
func (c *Cluster) StartAll(ctx context.Context) error {
	for i := range c.N() {
		if !c.Running(i) {
			if err := c.Start(i); err != nil {
				return err
			}
		}
	}
	for i := range c.N() {
		if err := c.WaitReady(ctx, i); err != nil {
			return err
		}
	}
	return nil
}
