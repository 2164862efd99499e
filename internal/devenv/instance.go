package devenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// ensureDefaultInstance creates the default instance with both simulated
// hubs linked, unless it exists (a restarted deployment keeps its own).
func (d *Deployment) ensureDefaultInstance(ctx context.Context) error {
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

// connection gathers the details written to connection.json.
func (d *Deployment) connection(ctx context.Context) (*dpsclient.Connection, error) {
	n := d.Nodes[0]
	v, err := n.Instances().Get(ctx, DefaultInstance)
	if err != nil {
		return nil, err
	}
	owner, err := n.Instances().Keys(ctx, DefaultInstance, model.OwnerPolicy)
	if err != nil {
		return nil, err
	}
	svcHost := n.ServiceHost(DefaultInstance)
	c := &dpsclient.Connection{
		IDScope:                 v.Instance.IDScope,
		InstanceName:            DefaultInstance,
		DeviceEndpoint:          n.DeviceHost(),
		ServiceEndpoint:         svcHost,
		ServiceConnectionString: fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", svcHost, owner.KeyName, owner.PrimaryKey),
		CACertificate:           filepath.Join(d.opts.DataDir, "tls", pki.CAFile),
		ControlEndpoint:         "https://localhost:" + port(n.Addr("control")),
		OperatorToken:           n.OperatorToken(),
		ConsoleURL:              "https://localhost:" + port(n.Addr("console")) + "/",
	}
	for _, h := range d.Hubs.Sim().Hubs() {
		cs, err := d.Hubs.ConnectionString(h.HostName)
		if err != nil {
			return nil, err
		}
		c.Hubs = append(c.Hubs, dpsclient.HubInfo{HostName: fmt.Sprintf("%s:%d", h.HostName, d.Hubs.Port()), ConnectionString: cs})
	}
	for _, nd := range d.Nodes {
		cfg := nd.Config()
		c.Nodes = append(c.Nodes, dpsclient.NodeInfo{
			Name: cfg.Name, Region: cfg.Region, Zone: cfg.Zone, PID: os.Getpid(),
			DeviceEndpoint: nd.DeviceHost(), ServiceAddr: nd.Addr("service"),
			ControlURL:    "https://localhost:" + port(nd.Addr("control")),
			ConsoleURL:    "https://localhost:" + port(nd.Addr("console")) + "/",
			EtcdClientURL: "http://" + cfg.EtcdClientAddr,
		})
	}
	return c, nil
}
