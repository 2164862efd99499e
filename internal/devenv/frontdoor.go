package devenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/frontdoor"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// The front door of a multi-region deployment (`opendps frontdoor`,
// internal/frontdoor; docs/dr-design.md): a TCP pass-through with one
// listener per API that health-checks every region's nodes (/readyz) and
// passes each connection to the first healthy region in order (the first
// group's regions first). It runs in this process, or as a child process
// `opendps frontdoor ...` with MultiProcess.

// frontDoor is the running front door.
type frontDoor interface {
	// Close stops it.
	Close()
	// Info is what connection.json says about it.
	Info() dpsclient.FrontDoorInfo
}

// frontDoorRegions lists the regions in the order the front door prefers
// them, with every node's listeners and readiness URL.
func (d *Deployment) frontDoorRegions() []frontdoor.Region {
	var out []frontdoor.Region
	for _, r := range d.Regions {
		fr := frontdoor.Region{Name: r.Name}
		for _, c := range r.configs {
			fr.Nodes = append(fr.Nodes, frontdoor.Node{Device: c.DeviceAddr, MQTT: c.MQTTAddr, Service: c.ServiceAddr,
				Ready: "https://localhost:" + port(c.ControlAddr) + "/readyz"})
		}
		out = append(out, fr)
	}
	return out
}

// startFrontDoor starts the front door on the listeners of fp.
func (d *Deployment) startFrontDoor(ctx context.Context, fp *frontDoorPorts) error {
	info := dpsclient.FrontDoorInfo{DeviceEndpoint: "localhost:" + port(fp.Device),
		MQTTEndpoint: "localhost:" + port(fp.MQTT), ServiceEndpoint: "localhost:" + port(fp.Service), PID: os.Getpid()}
	caFile := filepath.Join(d.opts.DataDir, "tls", pki.CAFile)
	if d.opts.MultiProcess {
		args := []string{"frontdoor", "--device-addr", fp.Device, "--mqtt-addr", fp.MQTT, "--service-addr", fp.Service,
			"--ready-ca", caFile, "--log-level", d.opts.LogLevel}
		for _, r := range d.frontDoorRegions() {
			var nodes []string
			for _, n := range r.Nodes {
				nodes = append(nodes, n.Device+"/"+n.MQTT+"/"+n.Service+"/"+n.Ready)
			}
			args = append(args, "--region", r.Name+"="+strings.Join(nodes, ","))
		}
		p, err := d.startChild("frontdoor", "", args)
		if err != nil {
			return err
		}
		info.PID, info.Command = p.PID(), p.Command
		d.FrontDoor = &procFrontDoor{p: p, info: info}
		return waitListening(ctx, fp.Device, p)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	fd, err := frontdoor.New(frontdoor.Config{DeviceAddr: fp.Device, MQTTAddr: fp.MQTT, ServiceAddr: fp.Service,
		Regions: d.frontDoorRegions(), ReadyTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Log: d.opts.Logger})
	if err != nil {
		return err
	}
	go d.forward(fd.Err())
	d.FrontDoor = &inprocFrontDoor{fd: fd, info: info}
	return nil
}

type inprocFrontDoor struct {
	fd   *frontdoor.FrontDoor
	info dpsclient.FrontDoorInfo
}

func (f *inprocFrontDoor) Close()                        { f.fd.Close() }
func (f *inprocFrontDoor) Info() dpsclient.FrontDoorInfo { return f.info }

type procFrontDoor struct {
	p    *Process
	info dpsclient.FrontDoorInfo
}

func (f *procFrontDoor) Close()                        { f.p.Stop() }
func (f *procFrontDoor) Info() dpsclient.FrontDoorInfo { return f.info }

// waitListening waits until addr accepts connections, p exits, or
// processReady passes.
func waitListening(ctx context.Context, addr string, p *Process) error {
	ctx, cancel := context.WithTimeout(ctx, processReady)
	defer cancel()
	for {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("front door exited before it listened (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("front door not listening on %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// frontDoorInfo is connection.json's frontDoor, nil without a front door.
func (d *Deployment) frontDoorInfo() *dpsclient.FrontDoorInfo {
	if d.FrontDoor == nil {
		return nil
	}
	fi := d.FrontDoor.Info()
	return &fi
}
