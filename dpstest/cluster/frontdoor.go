package cluster

import (
	"crypto/tls"
	"net"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/frontdoor"
)

// StartFrontDoor starts a front door (internal/frontdoor) in the test
// process on free loopback ports, passing connections to the regions in
// the order given (default: the order of RegionsConfig.Regions), checking
// each node's readiness every 200 ms. It is closed when the test ends.
// Clients reach it at "localhost:PORT" of fd.Addr(api), with the names of
// a real deployment ({instance}.localhost for the service API).
func (rs *Regions) StartFrontDoor(order ...string) (*frontdoor.FrontDoor, error) {
	if len(order) == 0 {
		order = rs.cfg.Regions
	}
	cfg := frontdoor.Config{DeviceAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", ServiceAddr: "127.0.0.1:0",
		CheckInterval: 200 * time.Millisecond, DialTimeout: time.Second,
		// Node certificates name localhost, not namespace addresses.
		ReadyTLS: &tls.Config{RootCAs: rs.sh.ca.CertPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	for _, name := range order {
		c := rs.Region(name)
		fr := frontdoor.Region{Name: name}
		c.mu.Lock()
		for _, n := range c.nodes {
			fr.Nodes = append(fr.Nodes, frontdoor.Node{Device: n.addr(n.device), MQTT: n.addr(n.mqtt), Service: n.addr(n.service),
				Ready: "https://" + n.addr(n.control) + "/readyz"})
		}
		c.mu.Unlock()
		cfg.Regions = append(cfg.Regions, fr)
	}
	fd, err := frontdoor.New(cfg)
	if err != nil {
		return nil, err
	}
	rs.t.Cleanup(func() { fd.Close() })
	return fd, nil
}

// LocalEndpoint turns a listener address of the test process
// (127.0.0.1:PORT, as fd.Addr returns) into "localhost:PORT".
func LocalEndpoint(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return "localhost:" + strconv.Itoa(n)
}
