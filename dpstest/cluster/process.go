package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one run of a node's OS process.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	err      error         // Wait's result, set before done is closed
	exitedAt time.Time     // set before done is closed
	stopping atomic.Bool   // the harness killed or stopped it
}

// startProcess starts cmd in its own process group with its output
// appended to logPath.
func startProcess(cmd *exec.Cmd, logPath, banner string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), banner)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		p.exitedAt = time.Now()
		how := "as asked"
		if !p.stopping.Load() {
			how = "UNEXPECTEDLY"
		}
		fmt.Fprintf(f, "=== %s pid %d exited %s: %v\n", p.exitedAt.Format(time.RFC3339Nano), cmd.Process.Pid, how, p.err)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) error {
	if p.exited() {
		return errors.New("cluster: process has exited")
	}
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		p.stopping.Store(true)
	}
	return syscall.Kill(-p.pid(), sig)
}

// exitStatus describes how the process ended ("" while it runs).
func (p *process) exitStatus() string {
	if !p.exited() {
		return ""
	}
	how := "exited"
	if !p.stopping.Load() {
		how = "exited unexpectedly"
	}
	return fmt.Sprintf("pid %d %s at %s: %v", p.pid(), how, p.exitedAt.Format("15:04:05.000"), p.err)
}

// wait waits up to d for the process to exit.
func (p *process) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the process group and waits for the exit.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	p.signal(syscall.SIGKILL)
	if !p.wait(30 * time.Second) {
		return fmt.Errorf("cluster: pid %d survived SIGKILL for 30s", p.pid())
	}
	return nil
}

// processAlive reports whether a process with this id exists.
func processAlive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// spawner starts every node from one goroutine locked to its OS thread for
// the life of the test process. PR_SET_PDEATHSIG fires when the *thread*
// that forked a child exits (golang/go#27505), and the Go runtime ends a
// thread when a goroutine locked to it returns; forking from a thread that
// never ends ties the signal to the death of the test process alone.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, done}
	return <-done
}
