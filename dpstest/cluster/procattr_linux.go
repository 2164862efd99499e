//go:build linux

package cluster

import "syscall"

// sysProcAttr puts a node in its own process group (so Kill reaches all of
// it) and has the kernel SIGKILL it if the test process dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
