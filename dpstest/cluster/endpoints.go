package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// instanceInfo is what New learnt about the instance it created.
type instanceInfo struct {
	idScope, keyName, key string
	hubs                  []string // host:port as linked
}

func quietLogger() *zap.Logger { return zap.NewNop() }

// clients builds the HTTP clients of the test process. Both send the
// names of a real deployment (localhost, {instance}.localhost) to the
// node owning the port.
func (c *Cluster) clients() {
	tc := &tls.Config{RootCAs: c.ca.CertPool(), MinVersion: tls.VersionTLS12}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: c.dial.DialContext, TLSClientConfig: tc, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 5 * time.Second,
	}}
	dtc, _ := dpsclient.DeviceTLSConfig("", nil)
	dtc.RootCAs = c.ca.CertPool()
	dt := dpsclient.NewDeviceTransport(dtc, false)
	dt.DialContext = c.dial.DialContext
	dt.TLSHandshakeTimeout = 5 * time.Second
	c.dhc = &http.Client{Transport: dt}
}

// N returns the number of nodes.
func (c *Cluster) N() int { return len(c.nodes) }

// Name returns node i's name (node1, node2, ...).
func (c *Cluster) Name(i int) string { return c.nodes[i].name }

// Zone returns node i's zone.
func (c *Cluster) Zone(i int) string { return c.nodes[i].zone }

// LogPath returns the file node i logs to (all its runs, appended).
func (c *Cluster) LogPath(i int) string { return c.nodes[i].logPath }

// DataDir returns node i's data directory.
func (c *Cluster) DataDir(i int) string { return c.nodes[i].dataDir }

// Dir returns the directory holding everything of the cluster.
func (c *Cluster) Dir() string { return c.dir }

// CAFile returns the PEM file of the CA that signs every server
// certificate (nodes and hubs).
func (c *Cluster) CAFile() string { return c.caDir + "/" + pki.CAFile }

// OperatorToken returns the control API credential of every node.
func (c *Cluster) OperatorToken() string { return c.token }

// DeviceEndpoint returns node i's device API host:port ("localhost:port",
// as tenants are told), for dpsclient.DeviceOptions.Endpoint with
// DeviceHTTPClient.
func (c *Cluster) DeviceEndpoint(i int) string {
	return "localhost:" + strconv.Itoa(c.nodes[i].device)
}

// ServiceHost returns the service API host of the instance on node i:
// "{instance}.localhost:port".
func (c *Cluster) ServiceHost(i int) string {
	return c.cfg.Instance + ".localhost:" + strconv.Itoa(c.nodes[i].service)
}

// ControlURL returns node i's control API base URL.
func (c *Cluster) ControlURL(i int) string {
	return "https://localhost:" + strconv.Itoa(c.nodes[i].control)
}

// EtcdEndpoint returns node i's etcd client URL.
func (c *Cluster) EtcdEndpoint(i int) string {
	return "http://" + c.nodes[i].addr(c.nodes[i].etcdClient)
}

// EtcdEndpoints returns every member's client URL.
func (c *Cluster) EtcdEndpoints() []string {
	eps := make([]string, len(c.nodes))
	for i := range c.nodes {
		eps[i] = c.EtcdEndpoint(i)
	}
	return eps
}

// HTTPClient returns the client for the service and control APIs of every
// node (HTTP/2, trusting the cluster CA). Bound requests by context.
func (c *Cluster) HTTPClient() *http.Client { return c.hc }

// DeviceHTTPClient returns a device-like client (HTTP/1.1 keep-alive,
// device TLS) reaching every node's device API.
func (c *Cluster) DeviceHTTPClient() *http.Client { return c.dhc }

// Control returns a control API client of node i.
func (c *Cluster) Control(i int) *dpsclient.Control {
	return dpsclient.NewControl(c.ControlURL(i), c.token, c.hc)
}

// Instance returns the name of the instance New created.
func (c *Cluster) Instance() string { return c.cfg.Instance }

// IDScope returns the instance's ID scope.
func (c *Cluster) IDScope() string { return c.inst.idScope }

// ServiceConnectionString returns the owner connection string of the
// instance with node i's service host.
func (c *Cluster) ServiceConnectionString(i int) string {
	return fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", c.ServiceHost(i), c.inst.keyName, c.inst.key)
}

// Service returns a service API client of the instance through node i.
func (c *Cluster) Service(i int) *dpsclient.Service {
	s, err := dpsclient.NewService(c.ServiceConnectionString(i), c.hc)
	if err != nil {
		panic(err) // the connection string is built here
	}
	return s
}

// LinkedHubs returns the host:port of the hubs linked to the instance.
func (c *Cluster) LinkedHubs() []string { return c.inst.hubs }

// Hubs returns the hub simulator serving the linked hubs.
func (c *Cluster) Hubs() *hubsim.Sim { return c.hubs.Sim() }

// setupInstance creates the instance and links the hubs through the
// control API of the first node that answers.
func (c *Cluster) setupInstance(ctx context.Context) error {
	return retry(ctx, func(ctx context.Context) error {
		ctl := c.Control(0)
		if _, err := ctl.GetInstance(ctx, c.cfg.Instance); err != nil {
			if _, err := ctl.CreateInstance(ctx, c.cfg.Instance, dpsclient.InstanceSpec{Location: c.cfg.Region}); err != nil {
				return err
			}
		}
		c.inst.hubs = nil
		for _, h := range c.cfg.Hubs {
			cs, err := c.hubs.ConnectionString(h)
			if err != nil {
				return err
			}
			if _, err := ctl.LinkHub(ctx, c.cfg.Instance, dpsclient.IotHub{ConnectionString: cs}); err != nil {
				return err
			}
			c.inst.hubs = append(c.inst.hubs, dpsclient.ConnectionStringHost(cs))
		}
		in, err := ctl.GetInstance(ctx, c.cfg.Instance)
		if err != nil {
			return err
		}
		keys, err := ctl.GetKeys(ctx, c.cfg.Instance, model.OwnerPolicy)
		if err != nil {
			return err
		}
		c.inst.idScope, c.inst.keyName, c.inst.key = in.Properties.IDScope, keys.KeyName, keys.PrimaryKey
		return nil
	})
}

// retry runs f with a 5s deadline per attempt until it succeeds or ctx
// ends.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Ready reports whether node i answers its readiness probe
// (GET /readyz on the control listener) with 200.
func (c *Cluster) Ready(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.ControlURL(i)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cluster: %s /readyz: %d %s", c.nodes[i].name, resp.StatusCode, b)
	}
	return nil
}

// WaitReady polls node i's readiness until it is ready or ctx ends; it
// gives up early if the process exits.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	for {
		if !c.Running(i) {
			return fmt.Errorf("cluster: %s exited while starting; log %s:\n%s", c.nodes[i].name, c.nodes[i].logPath, tail(c.nodes[i].logPath, 20))
		}
		err := c.Ready(ctx, i)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %v", c.nodes[i].name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Status asks member i for its etcd status (1s deadline).
func (c *Cluster) Status(ctx context.Context, i int) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.etcd.Status(ctx, c.EtcdEndpoint(i))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes[i].memberID = st.Header.MemberId
	c.mu.Unlock()
	return st, nil
}

// ErrNoLeader is returned by Leader when no majority of the members
// agrees on a leader.
var ErrNoLeader = errors.New("cluster: no leader agreed by a majority")

// Leader returns the index of the node whose member a majority of the
// members reports as leader. Stopped and frozen nodes are not asked.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	votes := map[uint64]int{}
	for i := range c.nodes {
		if !c.Running(i) || c.Frozen(i) {
			continue
		}
		if st, err := c.Status(ctx, i); err == nil && st.Leader != 0 {
			votes[st.Leader]++
		}
	}
	for id, v := range votes {
		if v > len(c.nodes)/2 {
			if i := c.indexOf(id); i >= 0 {
				return i, nil
			}
		}
	}
	return -1, ErrNoLeader
}

// WaitLeader polls Leader until there is one or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		l, err := c.Leader(ctx)
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return -1, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) indexOf(memberID uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n.memberID == memberID {
			return i
		}
	}
	return -1
}

// WaitHealthy waits until every node runs, is not frozen and is ready,
// every member reports the same leader, and every member has applied what
// the leader had committed when asked. It fails when ctx ends first.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for {
		err := c.Healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: not healthy: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Healthy checks once what WaitHealthy waits for, and says what is
// missing.
func (c *Cluster) Healthy(ctx context.Context) error {
	for i, n := range c.nodes {
		if !c.Running(i) {
			return fmt.Errorf("%s is not running (%s)", n.name, c.exitStatus(i))
		}
		if c.Frozen(i) {
			return fmt.Errorf("%s is frozen", n.name)
		}
		if err := c.Ready(ctx, i); err != nil {
			return err
		}
	}
	l, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	lst, err := c.Status(ctx, l)
	if err != nil {
		return err
	}
	for i, n := range c.nodes {
		st, err := c.Status(ctx, i)
		if err != nil {
			return err
		}
		if st.Leader != lst.Header.MemberId {
			return fmt.Errorf("%s follows %x, not the leader %x", n.name, st.Leader, lst.Header.MemberId)
		}
		if st.RaftAppliedIndex < lst.RaftIndex {
			return fmt.Errorf("%s applied %d < leader's commit %d", n.name, st.RaftAppliedIndex, lst.RaftIndex)
		}
	}
	return nil
}

// MemberClient returns an etcd client talking to member i only (for
// serializable reads of what that member holds). The caller closes it.
func (c *Cluster) MemberClient(i int) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{c.EtcdEndpoint(i)}, DialTimeout: 2 * time.Second, Logger: quietLogger()})
}
