package main

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/opendps/opendps/internal/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() { register(serveCmd) }

// nodeFlags binds the node configuration to flags of cmd.
func nodeFlags(cmd *cobra.Command, c *node.Config) *string {
	f := cmd.Flags()
	configFile := f.String("config", "", "JSON config file (flags given explicitly override it)")
	f.StringVar(&c.Name, "name", c.Name, "node name, unique in its region")
	f.StringVar(&c.Region, "region", c.Region, "region of the node (from the catalog)")
	f.StringVar(&c.Zone, "zone", c.Zone, "availability zone of the node")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory (etcd data, local CA, operator token)")
	f.StringVar(&c.CADir, "ca-dir", c.CADir, "directory of the local CA (default DATA-DIR/tls)")
	f.StringVar(&c.DeviceAddr, "device-addr", c.DeviceAddr, "listen address of the device API (HTTPS)")
	f.StringVar(&c.ServiceAddr, "service-addr", c.ServiceAddr, "listen address of the service API")
	f.StringVar(&c.ControlAddr, "control-addr", c.ControlAddr, "listen address of the control API")
	f.StringVar(&c.ConsoleAddr, "console-addr", c.ConsoleAddr, "listen address of the web console")
	f.StringVar(&c.MQTTAddr, "mqtt-addr", c.MQTTAddr, "listen address of the device API over MQTT with TLS (empty: disabled; MQTT over WebSocket is on --device-addr)")
	f.StringVar(&c.EtcdClientAddr, "etcd-client-addr", c.EtcdClientAddr, "client address of the embedded etcd member")
	f.StringVar(&c.EtcdPeerAddr, "etcd-peer-addr", c.EtcdPeerAddr, "peer address of the embedded etcd member")
	f.StringVar(&c.EtcdInitialCluster, "etcd-initial-cluster", c.EtcdInitialCluster, "name=http://host:port,... of the region's members")
	f.StringVar(&c.EtcdClusterState, "etcd-cluster-state", c.EtcdClusterState, "new (members of --etcd-initial-cluster bootstrap together) or existing (join after 'opendps region member add')")
	f.Var(joinFlag{&c.EtcdClusterState}, "join", "join a running region (same as --etcd-cluster-state existing)")
	f.Lookup("join").NoOptDefVal = "true"
	f.StringVar(&c.EtcdClusterToken, "etcd-cluster-token", c.EtcdClusterToken, "bootstrap token, the same on every member of the region (default opendps-REGION)")
	f.DurationVar(&c.EtcdHeartbeat, "etcd-heartbeat", c.EtcdHeartbeat, "Raft heartbeat interval (0: 100ms)")
	f.DurationVar(&c.EtcdElectionTimeout, "etcd-election-timeout", c.EtcdElectionTimeout, "Raft election timeout, at least 5 heartbeats (0: 1s)")
	f.DurationVar(&c.StoreTimeout, "store-timeout", c.StoreTimeout, "deadline of one attempt of a storage request (0: 1.5s)")
	f.StringSliceVar(&c.EtcdEndpoints, "etcd-endpoints", c.EtcdEndpoints, "use this external etcd cluster instead of an embedded member")
	f.StringSliceVar(&c.HostNames, "host-name", c.HostNames, "host names clients use for this node (server certificate SANs)")
	f.StringVar(&c.ServiceDomain, "service-domain", c.ServiceDomain, "instance N's service API is served at N.DOMAIN")
	f.StringVar(&c.PublicDeviceHost, "public-device-host", c.PublicDeviceHost, "device endpoint host[:port] reported to tenants")
	f.StringVar(&c.TLSCertFile, "tls-cert", c.TLSCertFile, "serve this certificate (PEM) instead of one from the local CA")
	f.StringVar(&c.TLSKeyFile, "tls-key", c.TLSKeyFile, "private key of --tls-cert")
	f.StringVar(&c.OperatorToken, "operator-token", envOr("OPENDPS_OPERATOR_TOKEN", c.OperatorToken), "control API credential (default: DATA-DIR/operator-token, created on first start)")
	f.StringSliceVar(&c.HostedRegions, "hosted-regions", c.HostedRegions, "further regions whose instances this cluster hosts (\"*\": all)")
	f.StringVar(&c.RegionsFile, "regions-file", c.RegionsFile, "JSON file extending the region catalog")
	f.DurationVar(&c.FastPath, "fast-path", c.FastPath, "how long a register call waits for the work before answering assigning (0: 200ms)")
	f.IntVar(&c.Throttle.RegistrationsPerMinute, "max-registrations-per-minute", c.Throttle.RegistrationsPerMinute, "register calls per instance per minute before 429 (0: default)")
	f.IntVar(&c.Throttle.PollsPer10s, "max-polls-per-10s", c.Throttle.PollsPer10s, "status polls per device per 10 s before 429 (0: default)")
	f.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	f.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text (key=value) or json (one object per line)")
	f.StringVar(&c.PeerAddr, "peer-addr", c.PeerAddr, "listen address of the peer link between regions (mutual TLS; empty: none)")
	f.StringToStringVar(&c.Peers, "peer", c.Peers, "REGION=https://host:port[,https://...] of another region's peer listeners (repeatable)")
	f.StringToStringVar(&c.ConsoleURLs, "console-url", c.ConsoleURLs, "REGION=https://host:port of a web console in another region (repeatable): console pages about instances primary there link to it")
	f.StringVar(&c.PeerCertFile, "peer-cert", c.PeerCertFile, "this region's peer-link certificate (PEM; default: issued by the local CA)")
	f.StringVar(&c.PeerKeyFile, "peer-key", c.PeerKeyFile, "private key of --peer-cert")
	f.StringVar(&c.PeerCAFile, "peer-ca", c.PeerCAFile, "CA certificates (PEM) of the other regions' peer-link certificates (default: the local CA)")
	f.DurationVar(&c.FailoverCooldown, "failover-cooldown", c.FailoverCooldown, "least time between two failovers of an instance (0: 5m; negative: none)")
	f.DurationVar(&c.DRStartGrace, "dr-start-grace", c.DRStartGrace, "how long a starting node waits to confirm with the secondary region before writing DR-enabled instances (0: 10s)")
	return configFile
}

// joinFlag is --join: a boolean view of Config.EtcdClusterState.
type joinFlag struct{ state *string }

func (j joinFlag) String() string {
	if j.state != nil && *j.state == "existing" {
		return "true"
	}
	return "false"
}

func (j joinFlag) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	if b {
		*j.state = "existing"
	} else if *j.state == "existing" {
		*j.state = "new"
	}
	return nil
}

func (joinFlag) Type() string { return "bool" }

// resolveNodeConfig applies the config file, then re-applies the flags the
// user set explicitly, so flags win.
func resolveNodeConfig(cmd *cobra.Command, c *node.Config, configFile string) error {
	if configFile == "" {
		return nil
	}
	// Snapshot the explicit values: re-Setting a slice flag from its
	// String() form would append "[a,b]" to what the file gave.
	type explicitFlag struct {
		f     *pflag.Flag
		val   string
		slice []string
	}
	var explicit []explicitFlag
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		e := explicitFlag{f: f, val: f.Value.String()}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			e.slice = slices.Clone(sv.GetSlice()) // the JSON decoder reuses the backing array
		}
		explicit = append(explicit, e)
	})
	if err := c.LoadConfigFile(configFile); err != nil {
		return err
	}
	for _, e := range explicit {
		var err error
		if sv, ok := e.f.Value.(pflag.SliceValue); ok {
			err = sv.Replace(e.slice)
		} else {
			err = e.f.Value.Set(e.val)
		}
		if err != nil {
			return fmt.Errorf("flag --%s: %w", e.f.Name, err)
		}
	}
	return nil
}

func serveCmd() *cobra.Command {
	cfg := node.DefaultConfig()
	var configFile *string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one opendps node",
		Long: `Run one opendps node: an embedded etcd member (or a client of an external
etcd cluster) and the device, service, control and console APIs over TLS.
On first start it creates a local CA and an operator token in the data
directory; a restart with the same data directory keeps everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := resolveNodeConfig(cmd, &cfg, *configFile); err != nil {
				return err
			}
			tuneGC()
			n, err := node.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer n.Close()
			select {
			case <-cmd.Context().Done():
				errf("opendps: shutting down")
				return nil
			case err := <-n.Err():
				return err
			}
		},
	}
	configFile = nodeFlags(cmd, &cfg)
	return cmd
}
