package devenv

import (
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/regions"
)

// Multi-region deployments (docs/dr-design.md): every region is its own
// etcd cluster of Zones nodes with a peer listener each; every node knows
// the peer listeners of every other region. They share the CA, the
// operator token and the hub simulator. Layout of DATA-DIR:
//
//	tls/ operator-token hubs.json ports.json connection.json
//	westeurope/node1/ westeurope/node2/ ...   (one etcd cluster)
//	northeurope/node1/ ...                     (another)
//
// A deployment of one region keeps the single-region layout (node1/ ...
// directly in DATA-DIR), without peer link.

// RegionGroup is a region with the regions run next to it (its pair): the
// first region is the primary of the group's default instance. The first
// group's instance is DefaultInstance (disaster recovery enabled, to its
// pair); the second group's is ResidencyInstance, created with
// enableDataResidency when the catalog allows it in that region.
type RegionGroup []string

// ResidencyInstance is the second default instance of a multi-region
// deployment (data residency in the first region of the second group).
const ResidencyInstance = "residency"

// DefaultRegions are the regions `opendps dev` runs: West Europe and its
// pair North Europe (the default instance), Brazil South and its pair South
// Central US (the residency instance).
var DefaultRegions = []RegionGroup{{"westeurope", "northeurope"}, {"brazilsouth", "southcentralus"}}

// RegionsSyntax documents ParseRegions for --help texts.
const RegionsSyntax = `groups of paired regions
separated by commas, the regions of a group by colons
("westeurope:northeurope,brazilsouth:southcentralus"), or a count N: the
first N of those four (1: one region, westeurope or --region, as before
disaster recovery)`

// FormatRegions writes groups in the --regions syntax (ParseRegions'
// inverse).
func FormatRegions(groups []RegionGroup) string {
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = strings.Join(g, ":")
	}
	return strings.Join(parts, ",")
}

// ParseRegions parses the --regions syntax (RegionsSyntax). "" gives
// DefaultRegions.
func ParseRegions(s string) ([]RegionGroup, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return cloneGroups(DefaultRegions), nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		all := slices.Concat(DefaultRegions...)
		if n < 1 || n > len(all) {
			return nil, fmt.Errorf("devenv: --regions %d: want 1 to %d, or a list of regions", n, len(all))
		}
		var out []RegionGroup
		for _, g := range DefaultRegions {
			if n == 0 {
				break
			}
			k := min(n, len(g))
			out = append(out, slices.Clone(g[:k]))
			n -= k
		}
		return out, nil
	}
	var out []RegionGroup
	for _, gs := range strings.Split(s, ",") {
		var g RegionGroup
		for _, r := range strings.Split(gs, ":") {
			if r = regions.Normalize(r); r == "" {
				return nil, fmt.Errorf("devenv: --regions %q: empty region name", s)
			}
			g = append(g, r)
		}
		out = append(out, g)
	}
	if err := checkGroups(out); err != nil {
		return nil, err
	}
	return out, nil
}

func cloneGroups(gs []RegionGroup) []RegionGroup {
	out := make([]RegionGroup, len(gs))
	for i, g := range gs {
		out[i] = slices.Clone(g)
	}
	return out
}

// checkGroups refuses unknown and repeated regions.
func checkGroups(gs []RegionGroup) error {
	cat := regions.Builtin()
	seen := map[string]bool{}
	for _, g := range gs {
		if len(g) == 0 {
			return errors.New("devenv: an empty region group")
		}
		for _, r := range g {
			if _, err := cat.Lookup(r); err != nil {
				return fmt.Errorf("devenv: region %q: %w", r, err)
			}
			if seen[r] {
				return fmt.Errorf("devenv: region %s listed twice", r)
			}
			seen[r] = true
		}
	}
	return nil
}

// regionNames lists the regions of groups in order.
func regionNames(gs []RegionGroup) []string { return slices.Concat(gs...) }

// multiRegion reports whether opts asks for more than one region.
func (o *Options) multiRegion() bool { return len(regionNames(o.Regions)) > 1 }

// instanceSpec is a default instance of a multi-region deployment.
type instanceSpec struct {
	name, region string
	residency    bool
}

// defaultInstances: DefaultInstance in the first group's first region,
// ResidencyInstance in the second's (with data residency where the
// catalog allows it).
func defaultInstances(gs []RegionGroup) []instanceSpec {
	out := []instanceSpec{{name: DefaultInstance, region: gs[0][0]}}
	if len(gs) > 1 {
		r := gs[1][0]
		cr, _ := regions.Builtin().Lookup(r)
		out = append(out, instanceSpec{name: ResidencyInstance, region: r, residency: cr.DataResidencyAllowed})
	}
	return out
}

// pairOf is the catalog's pair of region ("" if none).
func pairOf(region string) string {
	r, err := regions.Builtin().Lookup(region)
	if err != nil {
		return ""
	}
	return r.PairedRegion
}

// loadPortsMulti is loadPorts for a multi-region deployment: the hub
// simulator's, the front door's and every region's nodes' addresses,
// peer listeners included.
func loadPortsMulti(dir string, names []string, zones int) (*ports, error) {
	p, err := readPorts(dir)
	if err != nil {
		return nil, err
	}
	if len(p.Nodes) > 0 || p.Device != "" {
		return nil, fmt.Errorf("devenv: %s holds a single-region deployment; start it with --regions 1, or use another directory for several regions", dir)
	}
	if p.Regions == nil {
		p.Regions = map[string][]nodePorts{}
	}
	if p.FrontDoor == nil {
		p.FrontDoor = &frontDoorPorts{}
	}
	pp := &portPicker{used: map[string]bool{}}
	fields := []*string{&p.Hubs, &p.FrontDoor.Device, &p.FrontDoor.MQTT, &p.FrontDoor.Service}
	for _, r := range names {
		nps := p.Regions[r]
		n, err := zonesOf(filepath.Join(dir, r), len(nps), zones)
		if err != nil {
			return nil, err
		}
		if n < len(nps) {
			nps = nps[:n]
		} else {
			nps = append(nps, make([]nodePorts, n-len(nps))...)
		}
		p.Regions[r] = nps
		for i := range nps {
			np := &nps[i]
			fields = append(fields, &np.Device, &np.Service, &np.Control, &np.Console, &np.EtcdClient, &np.EtcdPeer, &np.MQTT, &np.Peer)
		}
	}
	for _, f := range fields {
		pp.used[*f] = *f != ""
	}
	for _, f := range fields {
		if *f != "" {
			continue
		}
		a, err := pp.pick()
		if err != nil {
			return nil, err
		}
		*f = a
	}
	return p, writeJSON(filepath.Join(dir, portsFile), p, 0o600)
}

// portPicker hands out free loopback addresses, never the same twice,
// with ports below the kernel's ephemeral range: a multi-region deployment
// picks about a hundred, and while its nodes start, their outgoing
// connections (etcd streams, peer links) take ephemeral ports, one of
// which could otherwise be a port picked but not yet bound.
type portPicker struct{ used map[string]bool }

func (pp *portPicker) pick() (string, error) {
	const lo = 10000
	hi := ephemeralLow()
	for range 500 {
		a := "127.0.0.1:" + strconv.Itoa(lo+mrand.IntN(hi-lo))
		if pp.used[a] {
			continue
		}
		if l, err := net.Listen("tcp", a); err == nil {
			l.Close()
			pp.used[a] = true
			return a, nil
		}
	}
	for range 100 { // a crowded range: any free port
		a, err := netutil.FreeLoopbackAddr()
		if err != nil {
			return "", err
		}
		if !pp.used[a] {
			pp.used[a] = true
			return a, nil
		}
	}
	return "", errors.New("devenv: no free loopback port")
}

// ephemeralLow is the lowest port of Linux's ephemeral range (32768
// elsewhere, or when unreadable: below every system's default range).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

// singleRegionLayout refuses to start one region in a directory holding a
// multi-region deployment (and the other way round, in loadPortsMulti).
func singleRegionLayout(p *ports, dir string) error {
	if len(p.Regions) > 0 {
		return fmt.Errorf("devenv: %s holds a deployment of several regions; start it with its --regions, or use another directory for one region", dir)
	}
	return nil
}

// peerURL is the peer link URL of a node listening on addr.
func peerURL(addr string) string { return "https://127.0.0.1:" + port(addr) }

// multiConfigs returns the node configurations of every region: each its
// own etcd cluster (token opendps-{region}, data in DATA-DIR/{region}/nodeN),
// a peer listener on every node, and Peers naming every other region's
// listeners. HostedRegions stays empty: a region hosts its own instances.
func multiConfigs(opts Options, p *ports) ([]*Region, error) {
	token, err := sharedToken(opts.DataDir)
	if err != nil {
		return nil, err
	}
	names := regionNames(opts.Regions)
	peers, consoles := map[string]string{}, map[string]string{}
	for _, r := range names {
		var urls []string
		for _, np := range p.Regions[r] {
			urls = append(urls, peerURL(np.Peer))
		}
		peers[r] = strings.Join(urls, ",")
		if len(p.Regions[r]) > 0 {
			consoles[r] = "https://localhost:" + port(p.Regions[r][0].Console)
		}
	}
	var out []*Region
	for _, r := range names {
		reg := &Region{Name: r, Pair: pairOf(r), dir: filepath.Join(opts.DataDir, r)}
		others, otherConsoles := map[string]string{}, map[string]string{}
		for _, o := range names {
			if o != r {
				others[o] = peers[o]
				if consoles[o] != "" {
					otherConsoles[o] = consoles[o]
				}
			}
		}
		reg.configs, err = clusterConfigs(opts, r, reg.dir, p.Regions[r], token, func(c *node.Config, np nodePorts) {
			c.PeerAddr = np.Peer
			c.Peers = maps.Clone(others)
			c.ConsoleURLs = maps.Clone(otherConsoles)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, reg)
	}
	return out, nil
}

// SingleRegionDir reports whether dir already holds a single-region
// deployment (`opendps dev` then keeps it single-region unless told
// otherwise).
func SingleRegionDir(dir string) bool {
	p, err := readPorts(dir)
	return err == nil && (len(p.Nodes) > 0 || p.Device != "")
}
