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

// nodeConfigs returns the configuration of every node: nodeN in zone N,
// its data in DataDir/nodeN, all sharing the CA and the operator token
// (written into each node's data directory, where the node reads it), and,
// with several nodes, one etcd cluster bootstrapped from a static member
// list.
func nodeConfigs(opts Options, p *ports) ([]node.Config, error) {
	token, err := sharedToken(opts.DataDir)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i, np := range p.Nodes {
		initial = append(initial, fmt.Sprintf("%s=http://%s", nodeName(i), np.EtcdPeer))
	}
	var out []node.Config
	for i, np := range p.Nodes {
		c := node.DefaultConfig()
		c.Name = nodeName(i)
		c.Region = opts.Region
		c.Zone = strconv.Itoa(i + 1)
		c.DataDir = filepath.Join(opts.DataDir, c.Name)
		c.CADir = filepath.Join(opts.DataDir, "tls")
		c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = np.Device, np.Service, np.Control, np.Console
		c.MQTTAddr = np.MQTT
		c.EtcdClientAddr, c.EtcdPeerAddr = np.EtcdClient, np.EtcdPeer
		if len(p.Nodes) > 1 {
			c.EtcdInitialCluster = strings.Join(initial, ",")
		}
		c.ServiceDomain = "localhost"
		c.HostedRegions = []string{"*"} // one region cluster hosts every location until DR adds the paired region
		c.LogLevel = opts.LogLevel
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

// startNodes starts every node in this process, together: the members of
// a new cluster wait for each other. If one fails, the others are stopped.
func (d *Deployment) startNodes(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodes := make([]*node.Node, len(d.configs))
	errs := make([]error, len(d.configs))
	var wg sync.WaitGroup
	for i, c := range d.configs {
		wg.Go(func() {
			nodes[i], errs[i] = node.Start(ctx, c)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("devenv: %s: %w", c.Name, errs[i])
				cancel() // the others would wait for a quorum in vain
			}
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			d.Nodes = append(d.Nodes, n)
			go d.forward(n.Err())
		}
	}
	return errors.Join(errs...)
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
