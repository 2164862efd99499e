package devenv

import (
	"context"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// The front door of a multi-region deployment (`opendps frontdoor`,
// internal/frontdoor; docs/dr-design.md): a TCP pass-through with one
// listener per API that health-checks every region's nodes and passes
// each connection to the first healthy region in order (the first
// group's regions first).
//
// TODO(frontdoor): internal/frontdoor was not in the tree when this was
// written. Once it is, startFrontDoor builds it from frontDoorBackends:
// in process with frontdoor.New(...) + Run (its Close in frontDoor), or,
// with MultiProcess, as a child `opendps frontdoor ...` started with
// d.startChild (its *Process kept in frontDoorProcess for the PID in
// connection.json). Until then no front door runs, d.FrontDoor is nil,
// connection.json has no frontDoor and its top-level endpoints are the
// first region's node1 (TestMultiRegion skips its front-door checks).

// frontDoor is the running front door.
type frontDoor interface {
	// Close stops its listeners and waits for them.
	Close()
	// Info is what connection.json says about it.
	Info() dpsclient.FrontDoorInfo
}

// frontDoorBackend is one region as the front door sees it: where to pass
// each API's connections, and what to probe.
type frontDoorBackend struct {
	Region                string
	Device, MQTT, Service []string // host:port of every node
	Health                []string // https://.../readyz of every node
}

// frontDoorBackends lists the regions in the order the front door
// prefers them.
func (d *Deployment) frontDoorBackends() []frontDoorBackend {
	var out []frontDoorBackend
	for _, r := range d.Regions {
		b := frontDoorBackend{Region: r.Name}
		for _, c := range r.configs {
			b.Device = append(b.Device, c.DeviceAddr)
			b.MQTT = append(b.MQTT, c.MQTTAddr)
			b.Service = append(b.Service, c.ServiceAddr)
			b.Health = append(b.Health, "https://localhost:"+port(c.ControlAddr)+"/readyz")
		}
		out = append(out, b)
	}
	return out
}

// startFrontDoor starts the front door on the listeners of fp (see the
// TODO above: for now it starts nothing).
func (d *Deployment) startFrontDoor(ctx context.Context, fp *frontDoorPorts) error {
	_ = d.frontDoorBackends() // TODO(frontdoor): pass these and fp to internal/frontdoor
	return nil
}

// frontDoorInfo is connection.json's frontDoor, nil without a front door.
func (d *Deployment) frontDoorInfo() *dpsclient.FrontDoorInfo {
	if d.FrontDoor == nil {
		return nil
	}
	fi := d.FrontDoor.Info()
	return &fi
}
