package bench

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// Enrollment kinds of the devices a run registers.
const (
	EnrollmentGroup      = "group"      // one symmetric-key enrollment group
	EnrollmentIndividual = "individual" // one individual enrollment per device
)

// Device protocols of the load generator.
const (
	ProtocolHTTPS = dpsclient.ProtocolHTTPS // the HTTPS device API
	ProtocolMQTT  = dpsclient.ProtocolMQTT  // MQTT over TLS, a connection per registration (as the Node SDK)
)

// Connection modes, as the report names them.
const (
	ModeNewConnection = "new-tls-connection-per-registration"
	ModeReuse         = "reused-connections"
)

// Config says what a run does. Zero fields take the values of
// DefaultConfig, except Rounds, Rate and the booleans.
type Config struct {
	// Conn is the deployment (connection.json): service connection string,
	// ID scope, CA, device endpoints of its nodes, etcd URLs. Required.
	Conn *dpsclient.Connection
	// Devices is the number of distinct devices registered.
	Devices int
	// Concurrency is the number of workers (capped at Devices).
	Concurrency int
	// Duration bounds the load phase; registrations in flight at the end
	// finish (each bounded by RegistrationTimeout).
	Duration time.Duration
	// Rounds, when positive, also ends the load phase once every device
	// was registered this many times; 0 leaves only Duration.
	Rounds int
	// Enrollment is EnrollmentGroup or EnrollmentIndividual.
	Enrollment string
	// ReuseConnections keeps TLS connections across registrations. By
	// default every registration opens its own connection (a full
	// handshake), as a fleet of distinct devices does. HTTPS only: an MQTT
	// connection belongs to one device (its client id).
	ReuseConnections bool
	// Protocol of the device API: ProtocolHTTPS or ProtocolMQTT.
	Protocol string
	// Rate, when positive, starts this many registrations per second
	// (open loop); latency is then measured from each one's scheduled
	// start, so queueing behind busy workers counts. 0 is closed loop:
	// every worker starts its next registration when the last one ends.
	Rate float64
	// RawStoreCheck measures raw etcd transactions on the same store after
	// the load phase, for the ratio.
	RawStoreCheck bool
	// RawDuration bounds the raw measurement.
	RawDuration time.Duration
	// RawValueBytes is the value size of a raw write: about the size of a
	// registration record.
	RawValueBytes int
	// SetupTimeout bounds the setup (enrollments) and, separately, the
	// cleanup.
	SetupTimeout time.Duration
	// RegistrationTimeout bounds one registration, polls included.
	RegistrationTimeout time.Duration
	// RetryThrottled waits out 429 answers (bounded) instead of counting
	// them as errors at once.
	RetryThrottled bool
	// NodeRetries bounds how often a registration that met a dead, cut-off
	// or not ready node (a transport error, a request timeout, or 503) is
	// tried again on the next node, as a load balancer would (0:
	// DefaultNodeRetries; negative: never). Registering again is safe: a
	// registration is idempotent.
	NodeRetries int
	// AttemptTimeout bounds each request to one node, so that a frozen
	// node costs a retry on the next one rather than the whole
	// RegistrationTimeout (0: DefaultAttemptTimeout).
	AttemptTimeout time.Duration
	// ReplicationLag, against a multi-region deployment (connection.json
	// has regions), measures the replication lag of the instance's stream
	// during the load: the source region's nodes' lag histogram before
	// and after, and their lag gauge every LagSampleInterval (Report.
	// Replication).
	ReplicationLag bool
	// LagSampleInterval is the period of the lag gauge's sampling (0:
	// DefaultLagSampleInterval).
	LagSampleInterval time.Duration
	// AllRegions spreads the registrations over the nodes of every region
	// of a multi-region deployment (the others forward them to the
	// primary). By default only the nodes of the instance's primary
	// region are used.
	AllRegions bool
	// Cleanup deletes what setup created, and the registration records of
	// the devices, after the run.
	Cleanup bool
	// RunID names the run's enrollments and devices (bench-<RunID>-<i>);
	// "" picks a random one.
	RunID string
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of `opendps bench`.
func DefaultConfig() Config {
	return Config{
		Devices:             1000,
		Concurrency:         64,
		Duration:            20 * time.Second,
		Enrollment:          EnrollmentGroup,
		Protocol:            ProtocolHTTPS,
		RawStoreCheck:       true,
		RawDuration:         5 * time.Second,
		RawValueBytes:       700,
		SetupTimeout:        2 * time.Minute,
		RegistrationTimeout: 30 * time.Second,
		NodeRetries:         DefaultNodeRetries,
		AttemptTimeout:      DefaultAttemptTimeout,
		ReplicationLag:      true,
		Cleanup:             true,
	}
}

// Defaults of the node failover of a registration.
const (
	DefaultNodeRetries    = 5
	DefaultAttemptTimeout = 10 * time.Second
)

// Bounds that keep a run from being a denial of service by typo.
const (
	MaxDevices     = 10_000_000
	MaxConcurrency = 10_000
	MaxDuration    = time.Hour
	MaxNodeRetries = 100
)

func (c *Config) setDefaults() {
	d := DefaultConfig()
	setIf(&c.Devices, d.Devices)
	setIf(&c.Concurrency, d.Concurrency)
	setIf(&c.Duration, d.Duration)
	setIf(&c.Enrollment, d.Enrollment)
	setIf(&c.Protocol, d.Protocol)
	setIf(&c.RawDuration, d.RawDuration)
	setIf(&c.RawValueBytes, d.RawValueBytes)
	setIf(&c.SetupTimeout, d.SetupTimeout)
	setIf(&c.RegistrationTimeout, d.RegistrationTimeout)
	setIf(&c.NodeRetries, d.NodeRetries)
	setIf(&c.AttemptTimeout, d.AttemptTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func setIf[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports a configuration Run would refuse, after defaults.
func (c *Config) Validate() error {
	switch {
	case c.Conn == nil:
		return errors.New("bench: no connection (connection.json)")
	case c.Conn.IDScope == "":
		return errors.New("bench: the connection has no idScope")
	case c.Conn.ServiceConnectionString == "":
		return errors.New("bench: the connection has no serviceConnectionString")
	case c.Protocol != ProtocolHTTPS && c.Protocol != ProtocolMQTT:
		return fmt.Errorf("bench: protocol %q: want %s or %s", c.Protocol, ProtocolHTTPS, ProtocolMQTT)
	case c.Protocol == ProtocolMQTT && c.ReuseConnections:
		return errors.New("bench: reusing connections is HTTPS only (an MQTT connection is one device's)")
	case len(c.endpoints()) == 0:
		return fmt.Errorf("bench: the connection has no %s device endpoint", c.Protocol)
	case c.Devices < 1 || c.Devices > MaxDevices:
		return fmt.Errorf("bench: devices %d out of [1, %d]", c.Devices, MaxDevices)
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("bench: concurrency %d out of [1, %d]", c.Concurrency, MaxConcurrency)
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("bench: duration %v out of (0, %v]", c.Duration, MaxDuration)
	case c.Rounds < 0:
		return fmt.Errorf("bench: rounds %d is negative", c.Rounds)
	case c.Rate < 0:
		return fmt.Errorf("bench: rate %v is negative", c.Rate)
	case c.Enrollment != EnrollmentGroup && c.Enrollment != EnrollmentIndividual:
		return fmt.Errorf("bench: enrollment %q: want %s or %s", c.Enrollment, EnrollmentGroup, EnrollmentIndividual)
	case c.NodeRetries > MaxNodeRetries:
		return fmt.Errorf("bench: node retries %d above %d", c.NodeRetries, MaxNodeRetries)
	case c.AttemptTimeout < 0:
		return fmt.Errorf("bench: request timeout %v is negative", c.AttemptTimeout)
	case c.RawValueBytes < 1 || c.RawValueBytes > 1<<20:
		return fmt.Errorf("bench: raw value size %d out of [1, 1 MiB]", c.RawValueBytes)
	}
	return nil
}

// DeviceEndpoints returns the device endpoints of the nodes of conn
// (deduplicated, in order), or its deviceEndpoint when no node has one.
func DeviceEndpoints(conn *dpsclient.Connection) []string {
	return deviceEndpoints(conn, "")
}

// deviceEndpoints is DeviceEndpoints of the nodes of region ("": all).
func deviceEndpoints(conn *dpsclient.Connection, region string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range conn.Nodes {
		if region != "" && n.Region != region {
			continue
		}
		if n.DeviceEndpoint != "" && !seen[n.DeviceEndpoint] {
			seen[n.DeviceEndpoint] = true
			out = append(out, n.DeviceEndpoint)
		}
	}
	if len(out) == 0 && conn.DeviceEndpoint != "" {
		out = append(out, conn.DeviceEndpoint)
	}
	return out
}

// MQTTEndpoints returns the MQTT-over-TLS endpoints of the nodes of conn
// (deduplicated, in order), or its mqttEndpoint when no node has one.
func MQTTEndpoints(conn *dpsclient.Connection) []string {
	return mqttEndpoints(conn, "")
}

// mqttEndpoints is MQTTEndpoints of the nodes of region ("": all).
func mqttEndpoints(conn *dpsclient.Connection, region string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range conn.Nodes {
		if region != "" && n.Region != region {
			continue
		}
		if n.MQTTEndpoint != "" && !seen[n.MQTTEndpoint] {
			seen[n.MQTTEndpoint] = true
			out = append(out, n.MQTTEndpoint)
		}
	}
	if len(out) == 0 && conn.MQTTEndpoint != "" {
		out = append(out, conn.MQTTEndpoint)
	}
	return out
}

// endpoints are the device endpoints of the configured protocol: of the
// nodes of the instance's primary region in a multi-region deployment
// (unless AllRegions), else of every node.
func (c *Config) endpoints() []string {
	region := ""
	if !c.AllRegions {
		region = PrimaryRegion(c.Conn)
	}
	if c.Protocol == ProtocolMQTT {
		if eps := mqttEndpoints(c.Conn, region); len(eps) > 0 {
			return eps
		}
		return MQTTEndpoints(c.Conn)
	}
	if eps := deviceEndpoints(c.Conn, region); len(eps) > 0 {
		return eps
	}
	return DeviceEndpoints(c.Conn)
}

// EtcdEndpoints returns the etcd client URLs of the nodes in the region of
// the instance (PrimaryRegion), else of the first node (one etcd cluster:
// a deployment with several regions runs one per region), or nil.
func EtcdEndpoints(conn *dpsclient.Connection) []string {
	if len(conn.Nodes) == 0 {
		return nil
	}
	region := PrimaryRegion(conn)
	if region == "" {
		region = conn.Nodes[0].Region
	}
	var out []string
	for _, n := range conn.Nodes {
		if n.EtcdClientURL != "" && n.Region == region {
			out = append(out, n.EtcdClientURL)
		}
	}
	return out
}
