package devenv

import "syscall"

// childAttr puts a child node in its own process group, so that a Ctrl-C
// in the terminal reaches the dev process alone (which stops the children
// in order), and has the kernel send it SIGTERM if the dev process dies.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
