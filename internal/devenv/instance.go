package devenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// ensureDefaultInstance creates the default instance with both simulated
// hubs linked, unless it exists (a restarted deployment keeps its own).
func (d *Deployment) ensureDefaultInstance(ctx context.Context) error {
	if d.opts.MultiProcess {
		return d.ensureDefaultInstanceRemote(ctx)
	}
	m := d.Nodes[0].Instances()
	_, err := m.Get(ctx, DefaultInstance)
	if err == nil {
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, instance.ErrNotFound) {
		return err
	}
	var hubs []instance.HubSpec
	for _, h := range HubNames {
		cs, err := d.Hubs.ConnectionString(h)
		if err != nil {
			return err
		}
		hubs = append(hubs, instance.HubSpec{ConnectionString: cs})
	}
	_, err = m.Create(ctx, instance.Spec{Name: DefaultInstance, Location: d.opts.Region, Hubs: hubs})
	return err
}

// connection gathers the details written to connection.json. The
// top-level endpoints are node1's; Nodes lists every node.
func (d *Deployment) connection(ctx context.Context) (*dpsclient.Connection, error) {
	if d.multi {
		return d.connectionMulti(ctx)
	}
	idScope, owner, err := d.defaultInstanceKeys(ctx)
	if err != nil {
		return nil, err
	}
	token, err := sharedToken(d.opts.DataDir)
	if err != nil {
		return nil, err
	}
	configs := d.Regions[0].configs
	first := configs[0]
	svcHost := DefaultInstance + ".localhost:" + port(first.ServiceAddr)
	c := &dpsclient.Connection{
		IDScope:                 idScope,
		InstanceName:            DefaultInstance,
		DeviceEndpoint:          "localhost:" + port(first.DeviceAddr),
		MQTTEndpoint:            "localhost:" + port(first.MQTTAddr),
		ServiceEndpoint:         svcHost,
		ServiceConnectionString: fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", svcHost, owner.KeyName, owner.PrimaryKey),
		CACertificate:           filepath.Join(d.opts.DataDir, "tls", pki.CAFile),
		ControlEndpoint:         "https://localhost:" + port(first.ControlAddr),
		OperatorToken:           token,
		ConsoleURL:              "https://localhost:" + port(first.ConsoleAddr) + "/",
	}
	if c.Hubs, err = d.hubInfo(); err != nil {
		return nil, err
	}
	for i, cfg := range configs {
		c.Nodes = append(c.Nodes, nodeInfo(cfg, d.Procs, i))
	}
	return c, nil
}

// nodeInfo is connection.json's entry of the node cfg configures: the
// process procs[i] runs it, or this process when there is none.
func nodeInfo(cfg node.Config, procs []*Process, i int) dpsclient.NodeInfo {
	ni := dpsclient.NodeInfo{
		Name: cfg.Name, Region: cfg.Region, Zone: cfg.Zone, PID: os.Getpid(),
		DeviceEndpoint: "localhost:" + port(cfg.DeviceAddr), ServiceAddr: cfg.ServiceAddr,
		MQTTEndpoint:  "localhost:" + port(cfg.MQTTAddr),
		ControlURL:    "https://localhost:" + port(cfg.ControlAddr),
		ConsoleURL:    "https://localhost:" + port(cfg.ConsoleAddr) + "/",
		EtcdClientURL: "http://" + cfg.EtcdClientAddr,
	}
	if i < len(procs) {
		ni.PID, ni.Command = procs[i].PID(), procs[i].Command
	}
	return ni
}

// hubInfo describes the simulated hubs.
func (d *Deployment) hubInfo() ([]dpsclient.HubInfo, error) {
	var out []dpsclient.HubInfo
	for _, h := range d.Hubs.Sim().Hubs() {
		cs, err := d.Hubs.ConnectionString(h.HostName)
		if err != nil {
			return nil, err
		}
		out = append(out, dpsclient.HubInfo{HostName: fmt.Sprintf("%s:%d", h.HostName, d.Hubs.Port()), ConnectionString: cs})
	}
	return out, nil
}

// defaultInstanceKeys returns the ID scope and the owner policy of the
// default instance.
func (d *Deployment) defaultInstanceKeys(ctx context.Context) (string, *model.AccessPolicy, error) {
	if d.opts.MultiProcess {
		return d.defaultInstanceKeysRemote(ctx)
	}
	m := d.Nodes[0].Instances()
	v, err := m.Get(ctx, DefaultInstance)
	if err != nil {
		return "", nil, err
	}
	owner, err := m.Keys(ctx, DefaultInstance, model.OwnerPolicy)
	if err != nil {
		return "", nil, err
	}
	return v.Instance.IDScope, &owner, nil
}
