package devenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/opendps/opendps/internal/node"
)

// tokenFile holds the operator token shared by the nodes of a deployment.
const tokenFile = "operator-token"

// singleConfigs is the one region of a single-region deployment: its
// nodes directly in DataDir, hosting every location (until DR adds the
// paired region), without peer link.
func singleConfigs(opts Options, p *ports) ([]*Region, error) {
	token, err := sharedToken(opts.DataDir)
	if err != nil {
		return nil, err
	}
	cs, err := clusterConfigs(opts, opts.Region, opts.DataDir, p.Nodes, token, func(c *node.Config, _ nodePorts) {
		c.HostedRegions = []string{"*"}
	})
	if err != nil {
		return nil, err
	}
	return []*Region{{Name: opts.Region, Pair: pairOf(opts.Region), dir: opts.DataDir, configs: cs}}, nil
}

// clusterConfigs returns the configuration of every node of one region's
// etcd cluster, one per entry of nps: nodeN in zone N, its data in
// dir/nodeN, all sharing the CA of DataDir and the operator token (written
// into each node's data directory, where the node reads it), and, with
// several nodes, one etcd cluster bootstrapped from a static member list.
// set adds what the layout needs, before opts.Tune.
func clusterConfigs(opts Options, region, dir string, nps []nodePorts, token string, set func(*node.Config, nodePorts)) ([]node.Config, error) {
	var initial []string
	for i, np := range nps {
		initial = append(initial, fmt.Sprintf("%s=http://%s", nodeName(i), np.EtcdPeer))
	}
	var out []node.Config
	for i, np := range nps {
		c := node.DefaultConfig()
		c.Name = nodeName(i)
		c.Region = region
		c.Zone = strconv.Itoa(i + 1)
		c.DataDir = filepath.Join(dir, c.Name)
		c.CADir = filepath.Join(opts.DataDir, "tls")
		c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = np.Device, np.Service, np.Control, np.Console
		c.MQTTAddr = np.MQTT
		c.EtcdClientAddr, c.EtcdPeerAddr = np.EtcdClient, np.EtcdPeer
		if len(nps) > 1 {
			c.EtcdInitialCluster = strings.Join(initial, ",")
		}
		c.ServiceDomain = "localhost"
		c.LogLevel = opts.LogLevel
		set(&c, np)
		if opts.Tune != nil {
			opts.Tune(&c)
		}
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, err
		}
		if err := writeIfChanged(filepath.Join(c.DataDir, tokenFile), []byte(token+"\n")); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func nodeName(i int) string { return "node" + strconv.Itoa(i+1) }

// sharedToken reads DataDir/operator-token, or creates it: node1's token
// when an older single-node deployment has one, else a random one.
func sharedToken(dir string) (string, error) {
	for _, p := range []string{filepath.Join(dir, tokenFile), filepath.Join(dir, "node1", tokenFile)} {
		if b, err := os.ReadFile(p); err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return t, writeIfChanged(filepath.Join(dir, tokenFile), []byte(t+"\n"))
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	t := base64.RawURLEncoding.EncodeToString(buf)
	return t, os.WriteFile(filepath.Join(dir, tokenFile), []byte(t+"\n"), 0o600)
}

func writeIfChanged(path string, b []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	return os.WriteFile(path, b, 0o600)
}

// startNodes starts every node of every region in this process, together:
// the members of a new cluster wait for each other, and regions do not
// depend on each other. If one fails, the others are stopped.
func (d *Deployment) startNodes(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type slot struct {
		r   *Region
		n   *node.Node
		err error
	}
	var slots []*slot
	var wg sync.WaitGroup
	for _, r := range d.Regions {
		for _, c := range r.configs {
			s := &slot{r: r}
			slots = append(slots, s)
			wg.Go(func() {
				s.n, s.err = node.Start(ctx, c)
				if s.err != nil {
					s.err = fmt.Errorf("devenv: %s: %w", d.nodeLabel(c), s.err)
					cancel() // the others would wait for a quorum in vain
				}
			})
		}
	}
	wg.Wait()
	var errs []error
	for _, s := range slots {
		if s.n != nil {
			s.r.Nodes = append(s.r.Nodes, s.n)
			d.Nodes = append(d.Nodes, s.n)
			go d.forward(s.n.Err())
		}
		errs = append(errs, s.err)
	}
	return errors.Join(errs...)
}

// nodeLabel names a node in messages: node1, or westeurope/node1 with
// several regions.
func (d *Deployment) nodeLabel(c node.Config) string {
	if d.multi {
		return c.Region + "/" + c.Name
	}
	return c.Name
}

// forward passes the errors of one component to Err until Close.
func (d *Deployment) forward(errc <-chan error) {
	for {
		select {
		case <-d.done:
			return
		case err := <-errc:
			select {
			case d.errc <- err:
			default:
			}
		}
	}
}
