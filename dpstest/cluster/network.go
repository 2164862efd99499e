package cluster

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"

	"github.com/opendps/opendps/internal/netutil"
)

// Network says how the nodes of a cluster are connected.
type Network string

const (
	// NetworkAuto uses NetworkNamespaces when the test runs as root on
	// Linux and the namespaces can be set up, else NetworkLoopback.
	NetworkAuto Network = ""
	// NetworkLoopback runs every node on 127.0.0.1 with its own ports.
	// Partition is not available.
	NetworkLoopback Network = "loopback"
	// NetworkNamespaces runs each node in its own network namespace,
	// attached to a bridge the test creates on a private /24; the test
	// process reaches every node over the bridge, and Partition cuts a
	// node off from its peers in both directions (see docs/reliability.md).
	NetworkNamespaces Network = "netns"
)

// NetworkEnv overrides Config.Network ("loopback" or "netns").
const NetworkEnv = "OPENDPS_CLUSTER_NETWORK"

// ErrPartitionUnsupported is returned by Partition when the cluster runs
// on plain loopback, where peer traffic cannot be cut per member.
var ErrPartitionUnsupported = errors.New("cluster: partitions need network namespaces (run as root on Linux)")

// network places the nodes and cuts links between them.
type network interface {
	// ip is the address node i listens on.
	ip(i int) string
	// command returns the command that runs bin with args as node i.
	command(i int, bin string, args []string) *exec.Cmd
	// forward makes 127.0.0.1:port inside every node's network reach
	// 127.0.0.1:port of the test process (the hub simulator).
	forward(port int) error
	// cut and mend block and restore all traffic between nodes a and b,
	// in both directions.
	cut(a, b int) error
	mend(a, b int) error
	partitions() bool
	close()
	describe() string
}

// loopback is NetworkLoopback.
type loopback struct{}

func (loopback) ip(int) string { return "127.0.0.1" }
func (loopback) command(_ int, bin string, args []string) *exec.Cmd {
	return exec.Command(bin, args...)
}
func (loopback) forward(int) error   { return nil }
func (loopback) cut(int, int) error  { return ErrPartitionUnsupported }
func (loopback) mend(int, int) error { return ErrPartitionUnsupported }
func (loopback) partitions() bool    { return false }
func (loopback) close()              {}
func (loopback) describe() string    { return "loopback (127.0.0.1, one port set per node)" }

// dialer sends the names clients use for the nodes ("localhost:port",
// "{instance}.localhost:port", "127.0.0.1:port") to the address of the
// node owning that port, so that TLS names stay those of a real
// deployment while nodes live on namespace addresses.
type dialer struct {
	byPort map[string]string // port -> node ip
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && (netutil.IsLocalhostName(host) || host == "127.0.0.1") {
		if ip, ok := d.byPort[port]; ok {
			addr = net.JoinHostPort(ip, port)
		} else {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
