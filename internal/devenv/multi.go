package devenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Region returns the region named name, or nil.
func (d *Deployment) Region(name string) *Region {
	for _, r := range d.Regions {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// ensureInstances creates the default instances of a multi-region
// deployment that do not exist yet, each through the control API of its
// region's node1, with every simulated hub linked (located in the
// instance's region).
func (d *Deployment) ensureInstances(ctx context.Context) error {
	for _, in := range defaultInstances(d.opts.Regions) {
		if err := d.ensureInstance(ctx, in); err != nil {
			return fmt.Errorf("%s in %s: %w", in.name, in.region, err)
		}
	}
	return nil
}

func (d *Deployment) ensureInstance(ctx context.Context, in instanceSpec) error {
	ctl, done, err := d.control(d.Region(in.region), 0)
	if err != nil {
		return err
	}
	defer done()
	spec := dpsclient.InstanceSpec{Location: in.region}
	if in.residency {
		yes := true
		spec.EnableDataResidency = &yes
	}
	for _, h := range HubNames {
		cs, err := d.Hubs.ConnectionString(h)
		if err != nil {
			return err
		}
		spec.IotHubs = append(spec.IotHubs, dpsclient.IotHub{ConnectionString: cs, Location: in.region})
	}
	// A DR-enabled instance's writes may wait for the first contact with
	// its secondary (the start gate, 503): a create can then leave the
	// instance without some hubs, which the next round links.
	return retryControl(ctx, func(ctx context.Context) error {
		v, err := ctl.GetInstance(ctx, in.name)
		if ce := (*dpsclient.ControlError)(nil); errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound {
			v, err = ctl.CreateInstance(ctx, in.name, spec)
		}
		if err != nil {
			return err
		}
		return linkMissingHubs(ctx, ctl, in.name, v.Properties.IotHubs, spec.IotHubs)
	})
}

// linkMissingHubs links every hub of want whose host is not in have.
func linkMissingHubs(ctx context.Context, ctl *dpsclient.Control, instance string, have, want []dpsclient.IotHub) error {
	linked := map[string]bool{}
	for _, h := range have {
		linked[dpsclient.ConnectionStringHost(h.ConnectionString)] = true
	}
	for _, h := range want {
		if !linked[dpsclient.ConnectionStringHost(h.ConnectionString)] {
			if _, err := ctl.LinkHub(ctx, instance, h); err != nil {
				return err
			}
		}
	}
	return nil
}

// retryControl runs f until it succeeds, fails with a client error (4xx),
// or 30 s pass: a region that has just formed may still answer 503 or
// time out for a moment.
func retryControl(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(actx)
		acancel()
		var ce *dpsclient.ControlError
		if err == nil || errors.As(err, &ce) && ce.StatusCode < 500 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// instanceInfo reads an instance's scope and owner key from its region.
func (d *Deployment) instanceInfo(ctx context.Context, in instanceSpec) (*dpsclient.ProvisioningService, *model.AccessPolicy, error) {
	ctl, done, err := d.control(d.Region(in.region), 0)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	var v *dpsclient.ProvisioningService
	var k *dpsclient.AccessPolicy
	err = retryControl(ctx, func(ctx context.Context) error {
		var err error
		if v, err = ctl.GetInstance(ctx, in.name); err != nil {
			return err
		}
		k, err = ctl.GetKeys(ctx, in.name, model.OwnerPolicy)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return v, &model.AccessPolicy{KeyName: k.KeyName, PrimaryKey: k.PrimaryKey, SecondaryKey: k.SecondaryKey, Rights: k.Rights}, nil
}

// connectionMulti gathers connection.json of a multi-region deployment.
// The top-level endpoints are the front door's when it runs (else the
// first region's node1); ControlEndpoint is the first region's node1, the
// default instance's primary. A residency instance's service endpoint
// stays in its region.
func (d *Deployment) connectionMulti(ctx context.Context) (*dpsclient.Connection, error) {
	token, err := sharedToken(d.opts.DataDir)
	if err != nil {
		return nil, err
	}
	first := d.Regions[0].configs[0]
	c := &dpsclient.Connection{
		CACertificate:   filepath.Join(d.opts.DataDir, "tls", pki.CAFile),
		ControlEndpoint: "https://localhost:" + port(first.ControlAddr),
		OperatorToken:   token,
		ConsoleURL:      "https://localhost:" + port(first.ConsoleAddr) + "/",
		Region:          d.Regions[0].Name,
		DeviceEndpoint:  "localhost:" + port(first.DeviceAddr),
		MQTTEndpoint:    "localhost:" + port(first.MQTTAddr),
	}
	serviceAddr := first.ServiceAddr
	if fd := d.frontDoorInfo(); fd != nil {
		c.FrontDoor = fd
		c.DeviceEndpoint, c.MQTTEndpoint = fd.DeviceEndpoint, fd.MQTTEndpoint
		serviceAddr = fd.ServiceEndpoint
	}
	for _, in := range defaultInstances(d.opts.Regions) {
		v, owner, err := d.instanceInfo(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("devenv: instance %s: %w", in.name, err)
		}
		addr := serviceAddr
		if v.Properties.EnableDataResidency {
			addr = d.Region(in.region).configs[0].ServiceAddr
		}
		host := in.name + ".localhost:" + port(addr)
		c.Instances = append(c.Instances, dpsclient.InstanceInfo{
			Name: in.name, IDScope: v.Properties.IDScope, Region: in.region,
			DataResidency: v.Properties.EnableDataResidency, ServiceEndpoint: host,
			ServiceConnectionString: fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", host, owner.KeyName, owner.PrimaryKey),
		})
	}
	def := c.Instances[0]
	c.IDScope, c.InstanceName, c.ServiceEndpoint, c.ServiceConnectionString = def.IDScope, def.Name, def.ServiceEndpoint, def.ServiceConnectionString
	if c.Hubs, err = d.hubInfo(); err != nil {
		return nil, err
	}
	for _, r := range d.Regions {
		ri := dpsclient.RegionInfo{Name: r.Name, Pair: r.Pair}
		for i, cfg := range r.configs {
			ri.ControlURLs = append(ri.ControlURLs, "https://localhost:"+port(cfg.ControlAddr))
			ri.PeerURLs = append(ri.PeerURLs, peerURL(cfg.PeerAddr))
			ri.DeviceEndpoints = append(ri.DeviceEndpoints, "localhost:"+port(cfg.DeviceAddr))
			c.Nodes = append(c.Nodes, nodeInfo(cfg, r.Procs, i))
		}
		c.Regions = append(c.Regions, ri)
	}
	return c, nil
}
