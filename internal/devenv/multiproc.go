package devenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Multi-process deployments: every node is a child process running
// `opendps serve --config DATA-DIR/nodeN/node.json`. The deployment starts
// them, waits until each is ready, and stops them when it closes; it never
// restarts one that exits, so that anyone can kill a node (a zone failure)
// and start it again with its Command.

const (
	nodeConfigFile = "node.json"
	// processReady bounds the wait for a child node to become ready.
	processReady = 90 * time.Second
	// processStop is how long a child has to exit after SIGTERM.
	processStop = 15 * time.Second
)

// Process is a node running as a child process.
type Process struct {
	Name   string
	Region string
	// Command starts the node again by hand, with the same configuration.
	Command []string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	err      error         // Wait's result, set before exited closes
	stopOnce sync.Once
	stopping chan struct{}
}

// PID is the child's process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the child exits; Err then says how.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the child exited (nil: status 0), once Exited is closed.
func (p *Process) Err() error { return p.err }

// Stop sends SIGTERM and waits for the child to exit, killing it after
// processStop. It is idempotent.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		close(p.stopping)
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(processStop):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// executable is the opendps binary of child processes.
func (d *Deployment) executable() (string, error) {
	if d.opts.Executable != "" {
		return d.opts.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("devenv: cannot find the opendps executable: %w", err)
	}
	return exe, nil
}

// startChild starts `opendps ARGS...` as a child process named name.
func (d *Deployment) startChild(name, region string, args []string) (*Process, error) {
	exe, err := d.executable()
	if err != nil {
		return nil, err
	}
	args = append(append([]string{}, d.opts.Args...), args...)
	p := &Process{Name: name, Region: region, Command: append([]string{exe}, args...),
		exited: make(chan struct{}), stopping: make(chan struct{})}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(os.Environ(), d.opts.Env...)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("devenv: start %s: %w", name, err)
	}
	go d.watch(p)
	return p, nil
}

// startProcesses starts one child per node of every region, then waits
// until all are ready (the regions come up side by side).
func (d *Deployment) startProcesses(ctx context.Context) error {
	for _, r := range d.Regions {
		for _, c := range r.configs {
			path := filepath.Join(c.DataDir, nodeConfigFile)
			if err := writeJSON(path, c, 0o600); err != nil {
				return err
			}
			p, err := d.startChild(c.Name, c.Region, []string{"serve", "--config", path})
			if err != nil {
				return err
			}
			r.Procs = append(r.Procs, p)
			d.Procs = append(d.Procs, p)
		}
	}
	hc, err := dpsclient.HTTPClient(filepath.Join(d.opts.DataDir, "tls", pki.CAFile))
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	for _, r := range d.Regions {
		for i, p := range r.Procs {
			url := "https://localhost:" + port(r.configs[i].ControlAddr) + "/readyz"
			if err := waitReady(ctx, hc, url, p); err != nil {
				return fmt.Errorf("devenv: %s: %w", d.nodeLabel(r.configs[i]), err)
			}
		}
	}
	return nil
}

// watch waits for p to exit and reports it unless the deployment stopped
// it.
func (d *Deployment) watch(p *Process) {
	p.err = p.cmd.Wait()
	close(p.exited)
	select {
	case <-p.stopping:
		return
	default:
	}
	d.opts.Logger.Warn("process exited; start it again with its command", "process", p.Name, "region", p.Region,
		"pid", p.cmd.Process.Pid, "status", fmt.Sprint(p.err), "command", p.Command)
}

// waitReady polls url until it answers 200, p exits, or processReady
// passes.
func waitReady(ctx context.Context, hc *http.Client, url string, p *Process) error {
	ctx, cancel := context.WithTimeout(ctx, processReady)
	defer cancel()
	var last error = errors.New("no answer")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leaderProcess returns the child of region r whose member leads, as a
// running node says; nil when none is known.
func (d *Deployment) leaderProcess(r *Region) *Process {
	if len(r.Procs) < 2 {
		return nil
	}
	for i, p := range r.Procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		ctl, done, err := d.control(r, i)
		if err != nil {
			return nil
		}
		defer done()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := ctl.RegionStatus(ctx)
		cancel()
		if err != nil {
			continue
		}
		for _, q := range r.Procs {
			if q.Name == st.Leader {
				return q
			}
		}
		return nil
	}
	return nil
}

// control is a control API client of node i (0: node1) of region r.
func (d *Deployment) control(r *Region, i int) (*dpsclient.Control, func(), error) {
	hc, err := dpsclient.HTTPClient(filepath.Join(d.opts.DataDir, "tls", pki.CAFile))
	if err != nil {
		return nil, nil, err
	}
	token, err := sharedToken(d.opts.DataDir)
	if err != nil {
		return nil, nil, err
	}
	return dpsclient.NewControl("https://localhost:"+port(r.configs[i].ControlAddr), token, hc), hc.CloseIdleConnections, nil
}

// ensureDefaultInstanceRemote is ensureDefaultInstance through node1's
// control API.
func (d *Deployment) ensureDefaultInstanceRemote(ctx context.Context) error {
	ctl, done, err := d.control(d.Regions[0], 0)
	if err != nil {
		return err
	}
	defer done()
	_, err = ctl.GetInstance(ctx, DefaultInstance)
	var ce *dpsclient.ControlError
	if err == nil || !errors.As(err, &ce) || ce.StatusCode != http.StatusNotFound {
		return err
	}
	spec := dpsclient.InstanceSpec{Location: d.opts.Region}
	for _, h := range HubNames {
		cs, err := d.Hubs.ConnectionString(h)
		if err != nil {
			return err
		}
		spec.IotHubs = append(spec.IotHubs, dpsclient.IotHub{ConnectionString: cs, Location: d.opts.Region})
	}
	_, err = ctl.CreateInstance(ctx, DefaultInstance, spec)
	return err
}

// defaultInstanceKeysRemote is defaultInstanceKeys through node1's control
// API.
func (d *Deployment) defaultInstanceKeysRemote(ctx context.Context) (string, *model.AccessPolicy, error) {
	ctl, done, err := d.control(d.Regions[0], 0)
	if err != nil {
		return "", nil, err
	}
	defer done()
	v, err := ctl.GetInstance(ctx, DefaultInstance)
	if err != nil {
		return "", nil, err
	}
	k, err := ctl.GetKeys(ctx, DefaultInstance, model.OwnerPolicy)
	if err != nil {
		return "", nil, err
	}
	return v.Properties.IDScope, &model.AccessPolicy{KeyName: k.KeyName, PrimaryKey: k.PrimaryKey,
		SecondaryKey: k.SecondaryKey, Rights: k.Rights}, nil
}
