//go:build !linux

package cluster

import "syscall"

// sysProcAttr puts a node in its own process group, so Kill reaches all of it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
