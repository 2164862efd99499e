// Package node runs one opendps server process: the embedded etcd member
// (or a client of an external cluster), the device, service, control and
// console listeners, all over TLS.
//
//	n, err := node.Start(ctx, cfg)
//	...
//	<-n.ReadyNotify()
//	defer n.Close()
package node

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/opendps/opendps/internal/throttle"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is everything a node needs. Flags, the JSON config file and
// DefaultConfig all map to these fields.
type Config struct {
	// Name is the node's name, unique in its region (the etcd member name).
	Name string `json:"name"`
	// Region and Zone place the node (Region must be in the catalog).
	Region string `json:"region"`
	Zone   string `json:"zone"`
	// DataDir holds the etcd data, the local CA and the operator token.
	DataDir string `json:"dataDir"`
	// CADir holds the local CA (default DataDir/tls). Nodes of a dev
	// deployment share one.
	CADir string `json:"caDir,omitempty"`

	// Listen addresses (host:port). Port 0 picks a free port.
	DeviceAddr  string `json:"deviceAddr"`
	ServiceAddr string `json:"serviceAddr"`
	ControlAddr string `json:"controlAddr"`
	ConsoleAddr string `json:"consoleAddr"`
	// MQTTAddr is the listen address of the device API over MQTT 3.1.1
	// with TLS (DPS uses 8883); empty disables it. MQTT over WebSocket is
	// served on the device listener (DeviceAddr) whatever this says.
	MQTTAddr string `json:"mqttAddr,omitempty"`

	// EtcdClientAddr and EtcdPeerAddr are the embedded member's addresses
	// (host:port, a real port).
	EtcdClientAddr string `json:"etcdClientAddr"`
	EtcdPeerAddr   string `json:"etcdPeerAddr"`
	// EtcdInitialCluster is "name=http://host:port,..." for a multi-member
	// region; empty for a single member.
	EtcdInitialCluster string `json:"etcdInitialCluster,omitempty"`
	// EtcdClusterState is "new" (the default: the members of
	// EtcdInitialCluster bootstrap together) or "existing" (this member was
	// added at run time with `opendps region member add` and joins).
	// Either way a node whose data directory holds a member just restarts.
	EtcdClusterState string `json:"etcdClusterState,omitempty"`
	// EtcdClusterToken must be the same on every member of the region
	// (empty: "opendps-{region}").
	EtcdClusterToken string `json:"etcdClusterToken,omitempty"`
	// EtcdHeartbeat and EtcdElectionTimeout are the Raft timers (0: 100ms
	// and 1s, suited to zones a few milliseconds apart; docs/zones.md).
	EtcdHeartbeat       time.Duration `json:"etcdHeartbeat,omitempty"`
	EtcdElectionTimeout time.Duration `json:"etcdElectionTimeout,omitempty"`
	// EtcdEndpoints, when set, uses an external etcd cluster instead of an
	// embedded member.
	EtcdEndpoints []string `json:"etcdEndpoints,omitempty"`

	// HostNames are the names clients use to reach this node; they go into
	// the server certificate with localhost and 127.0.0.1.
	HostNames []string `json:"hostNames,omitempty"`
	// ServiceDomain: the service API of instance N is served at host
	// N.ServiceDomain, as Azure serves {name}.azure-devices-provisioning.net.
	ServiceDomain string `json:"serviceDomain"`
	// PublicDeviceHost overrides the device endpoint host[:port] that the
	// control API reports (default: first host name and the device port).
	PublicDeviceHost string `json:"publicDeviceHost,omitempty"`
	// TLSCertFile and TLSKeyFile, when both set, are served instead of
	// certificates from the local CA.
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	TLSKeyFile  string `json:"tlsKeyFile,omitempty"`

	// OperatorToken authenticates the control API and the console. Empty:
	// read from DataDir/operator-token, created on first start.
	OperatorToken string `json:"operatorToken,omitempty"`
	// HostedRegions are further catalog regions whose instances this
	// region's cluster hosts as primary ("*": every region). A deployment
	// that runs one cluster per region leaves it empty; a single-region
	// development deployment sets "*".
	HostedRegions []string `json:"hostedRegions,omitempty"`
	// RegionsFile extends or overrides the built-in region catalog.
	RegionsFile string `json:"regionsFile,omitempty"`

	// FastPath is how long a register call waits for the work to finish
	// before answering "assigning" (0: 200 ms; negative: never wait).
	FastPath time.Duration `json:"fastPath,omitempty"`
	// Throttle limits registrations per instance and polls per device
	// (zero fields: defaults far above DPS's 1,000 registrations per
	// minute and 5 polls per 10 s).
	Throttle throttle.Config `json:"throttle,omitzero"`
	// StoreTimeout bounds each attempt of a storage request (0: 1.5s);
	// reads and writes that provably did not apply are retried
	// (internal/store/retry.go).
	StoreTimeout time.Duration `json:"storeTimeout,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// LogFormat is text (the default: logfmt-like key=value) or json (one
	// object per line, for log shippers).
	LogFormat string `json:"logFormat,omitempty"`
	// Log, when set, receives the node's logs instead of a text handler
	// on stderr at LogLevel (tests capture them).
	Log *slog.Logger `json:"-"`

	// Disaster recovery (docs/dr-design.md).

	// PeerAddr is the listen address of the peer link between regions
	// (mutual TLS; empty: no peer link, the region stands alone).
	PeerAddr string `json:"peerAddr,omitempty"`
	// Peers maps every other region of the deployment to the base URL(s)
	// of its peer listeners ("https://host:port", comma-separated for
	// several nodes).
	Peers map[string]string `json:"peers,omitempty"`
	// ConsoleURLs maps other regions to the base URL of a web console
	// there ("https://host:port"): console pages about an instance primary
	// in such a region link to it (internal/console).
	ConsoleURLs map[string]string `json:"consoleURLs,omitempty"`
	// PeerCertFile and PeerKeyFile are this region's certificate on the
	// peer link (URI SAN opendps-region://REGION); PeerCAFile verifies the
	// other regions'. Empty: issued by (and verified against) the local CA.
	PeerCertFile string `json:"peerCertFile,omitempty"`
	PeerKeyFile  string `json:"peerKeyFile,omitempty"`
	PeerCAFile   string `json:"peerCAFile,omitempty"`
	// FailoverCooldown is the least time between two failovers of an
	// instance (0: 5m; negative: none).
	FailoverCooldown time.Duration `json:"failoverCooldown,omitempty"`
	// DRStartGrace bounds how long a starting node keeps writes of its
	// DR-enabled primary instances closed while it cannot confirm with the
	// secondary region that no failover happened (0: 10s).
	DRStartGrace time.Duration `json:"drStartGrace,omitempty"`
}

// DefaultConfig returns the configuration of a single node listening on
// the standard opendps ports.
func DefaultConfig() Config {
	return Config{
		Name:           "node1",
		Region:         "westeurope",
		Zone:           "1",
		DataDir:        "opendps-data",
		DeviceAddr:     ":8443",
		ServiceAddr:    ":8444",
		ControlAddr:    ":8445",
		ConsoleAddr:    ":8446",
		MQTTAddr:       ":8883",
		EtcdClientAddr: "127.0.0.1:2379",
		EtcdPeerAddr:   "127.0.0.1:2380",
		ServiceDomain:  "localhost",
		LogLevel:       "info",
	}
}

// LoadConfigFile overlays the JSON file at path onto c.
func (c *Config) LoadConfigFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("node: config %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("node: config %s: unexpected data after the JSON object", path)
	}
	return nil
}

// Validate checks the configuration before anything starts.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if c.Region == "" {
		errs = append(errs, errors.New("region is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir is required"))
	}
	// Slices, not maps: the errors come out in a stable order.
	for _, l := range []struct{ name, addr string }{
		{"deviceAddr", c.DeviceAddr}, {"serviceAddr", c.ServiceAddr},
		{"controlAddr", c.ControlAddr}, {"consoleAddr", c.ConsoleAddr}, {"mqttAddr", c.MQTTAddr},
		{"peerAddr", c.PeerAddr},
	} {
		if (l.name == "mqttAddr" || l.name == "peerAddr") && l.addr == "" {
			continue // disabled
		}
		// LookupPort accepts what net.Listen accepts: 0-65535 or a service name.
		if _, p, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port", l.name, l.addr))
		} else if _, err := net.LookupPort("tcp", p); err != nil {
			errs = append(errs, fmt.Errorf("%s %q has an invalid port", l.name, l.addr))
		}
	}
	if len(c.EtcdEndpoints) == 0 {
		for _, l := range []struct{ name, addr string }{
			{"etcdClientAddr", c.EtcdClientAddr}, {"etcdPeerAddr", c.EtcdPeerAddr},
		} {
			// etcd URLs need a numeric port; 0 cannot be advertised.
			_, p, err := net.SplitHostPort(l.addr)
			if n, perr := strconv.ParseUint(p, 10, 16); err != nil || perr != nil || n == 0 {
				errs = append(errs, fmt.Errorf("%s %q must be host:port with a real port", l.name, l.addr))
			}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tlsCertFile and tlsKeyFile go together"))
	}
	if c.ServiceDomain == "" || strings.Contains(c.ServiceDomain, ":") {
		errs = append(errs, errors.New("serviceDomain must be a DNS domain without port"))
	}
	switch c.EtcdClusterState {
	case "", "new", "existing":
	default:
		errs = append(errs, fmt.Errorf("etcdClusterState %q is not new or existing", c.EtcdClusterState))
	}
	if c.EtcdClusterState == "existing" && c.EtcdInitialCluster == "" && len(c.EtcdEndpoints) == 0 {
		errs = append(errs, errors.New("etcdClusterState existing needs etcdInitialCluster (as `opendps region member add` prints it)"))
	}
	if c.EtcdHeartbeat < 0 || c.EtcdElectionTimeout < 0 {
		errs = append(errs, errors.New("etcdHeartbeat and etcdElectionTimeout must not be negative"))
	} else if hb, el := cmp.Or(c.EtcdHeartbeat, 100*time.Millisecond), cmp.Or(c.EtcdElectionTimeout, time.Second); el < 5*hb || el > 50*time.Second {
		errs = append(errs, fmt.Errorf("etcdElectionTimeout %v must be at least 5 heartbeats (%v) and at most 50s", el, hb))
	}
	if len(c.Peers) > 0 && c.PeerAddr == "" {
		errs = append(errs, errors.New("peers need peerAddr (the peer link's listener)"))
	}
	for r, u := range c.Peers {
		if r == c.Region {
			errs = append(errs, fmt.Errorf("peers lists the node's own region %s", r))
		}
		for _, one := range strings.Split(u, ",") {
			if !strings.HasPrefix(strings.TrimSpace(one), "https://") {
				errs = append(errs, fmt.Errorf("peer %s: %q is not an https:// URL", r, one))
			}
		}
	}
	if (c.PeerCertFile == "") != (c.PeerKeyFile == "") {
		errs = append(errs, errors.New("peerCertFile and peerKeyFile go together"))
	}
	if c.DRStartGrace < 0 {
		errs = append(errs, fmt.Errorf("drStartGrace %v must not be negative", c.DRStartGrace))
	}
	if c.StoreTimeout < 0 {
		errs = append(errs, fmt.Errorf("storeTimeout %v must not be negative", c.StoreTimeout))
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("logLevel %q is not debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("logFormat %q is not text or json", c.LogFormat))
	}
	if len(errs) > 0 {
		return fmt.Errorf("node: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
