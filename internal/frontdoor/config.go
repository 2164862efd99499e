package frontdoor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// The APIs a front door passes through, one listener each.
const (
	APIDevice  = "device"  // HTTPS device API and MQTT over WebSocket
	APIMQTT    = "mqtt"    // MQTT over TLS
	APIService = "service" // the service API
)

// APIs lists the APIs in listener order.
var APIs = []string{APIDevice, APIMQTT, APIService}

// Defaults of Config.
const (
	DefaultCheckInterval = 500 * time.Millisecond
	DefaultDialTimeout   = time.Second
	DefaultIdleTimeout   = 5 * time.Minute
)

// Node is one node of a region: the host:port of each of its listeners
// ("" when it does not serve that API) and, optionally, the URL of its
// readiness endpoint (https://host:port/readyz on the control listener; a
// URL without path gets /readyz).
type Node struct {
	Device  string `json:"device,omitempty"`
	MQTT    string `json:"mqtt,omitempty"`
	Service string `json:"service,omitempty"`
	Ready   string `json:"ready,omitempty"`
}

func (n Node) addr(api string) string {
	switch api {
	case APIDevice:
		return n.Device
	case APIMQTT:
		return n.MQTT
	}
	return n.Service
}

// Region is a region's nodes.
type Region struct {
	Name  string `json:"name"`
	Nodes []Node `json:"nodes"`
}

// Config configures a front door. The zero values of the durations mean
// their defaults.
type Config struct {
	// DeviceAddr, MQTTAddr and ServiceAddr are the listen addresses of
	// each API ("" : not served; port 0 picks one, see FrontDoor.Addr).
	DeviceAddr  string `json:"deviceAddr,omitempty"`
	MQTTAddr    string `json:"mqttAddr,omitempty"`
	ServiceAddr string `json:"serviceAddr,omitempty"`
	// StatusAddr serves GET /healthz and GET /status (JSON: the region
	// each API routes to and the health of every backend) over plain
	// HTTP; "" serves none.
	StatusAddr string `json:"statusAddr,omitempty"`
	// Regions in order of preference: a new connection goes to a healthy
	// node of the first region that has one for its API.
	Regions []Region `json:"regions"`
	// CheckInterval is the period of health checks (TCP connect to each
	// backend, GET of each node's Ready URL).
	CheckInterval time.Duration `json:"checkInterval,omitempty"`
	// DialTimeout bounds a connection to a backend and one health check.
	DialTimeout time.Duration `json:"dialTimeout,omitempty"`
	// IdleTimeout closes a connection on which no byte moved either way
	// for that long.
	IdleTimeout time.Duration `json:"idleTimeout,omitempty"`
	// ReadyTLS is the client TLS of readiness checks; nil uses the
	// system roots.
	ReadyTLS *tls.Config `json:"-"`
	// Log receives routing changes and errors; nil discards.
	Log *slog.Logger `json:"-"`
}

func (c *Config) listenAddr(api string) string {
	switch api {
	case APIDevice:
		return c.DeviceAddr
	case APIMQTT:
		return c.MQTTAddr
	}
	return c.ServiceAddr
}

// Validate checks c and fills in defaults.
func (c *Config) Validate() error {
	if c.DeviceAddr == "" && c.MQTTAddr == "" && c.ServiceAddr == "" {
		return errors.New("frontdoor: config: no listen address (DeviceAddr, MQTTAddr, ServiceAddr)")
	}
	if len(c.Regions) == 0 {
		return errors.New("frontdoor: config: no region")
	}
	seen := map[string]bool{}
	for _, r := range c.Regions {
		if r.Name == "" || seen[r.Name] {
			return fmt.Errorf("frontdoor: config: region name %q is empty or repeated", r.Name)
		}
		seen[r.Name] = true
		if len(r.Nodes) == 0 {
			return fmt.Errorf("frontdoor: config: region %s has no node", r.Name)
		}
		for _, n := range r.Nodes {
			for _, api := range APIs {
				if a := n.addr(api); a != "" {
					if _, _, err := net.SplitHostPort(a); err != nil {
						return fmt.Errorf("frontdoor: config: region %s: %s backend %q is not host:port", r.Name, api, a)
					}
				}
			}
			if n.Ready != "" {
				if u, err := url.Parse(n.Ready); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					return fmt.Errorf("frontdoor: config: region %s: ready URL %q is not an http(s) URL", r.Name, n.Ready)
				}
			}
		}
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// ParseRegion parses the command-line form of a region:
//
//	NAME=NODE[,NODE...]
//	NODE = DEVICE/MQTT/SERVICE[/READY-URL]
//
// where DEVICE, MQTT and SERVICE are host:port ("" or "-" when the node
// does not serve that API) and READY-URL is optional, for example
//
//	westeurope=10.0.0.1:443/10.0.0.1:8883/10.0.0.1:8444/https://10.0.0.1:8445
func ParseRegion(s string) (Region, error) {
	name, nodes, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.TrimSpace(nodes) == "" {
		return Region{}, fmt.Errorf("frontdoor: region %q: want NAME=DEVICE/MQTT/SERVICE[/READY-URL],...", s)
	}
	r := Region{Name: name}
	for _, spec := range strings.Split(nodes, ",") {
		parts := strings.SplitN(strings.TrimSpace(spec), "/", 4)
		if len(parts) < 3 {
			return Region{}, fmt.Errorf("frontdoor: region %s: node %q: want DEVICE/MQTT/SERVICE[/READY-URL]", name, spec)
		}
		for i, p := range parts[:3] {
			if p == "-" {
				parts[i] = ""
			}
		}
		n := Node{Device: parts[0], MQTT: parts[1], Service: parts[2]}
		if len(parts) == 4 {
			n.Ready = parts[3]
		}
		r.Nodes = append(r.Nodes, n)
	}
	return r, nil
}
