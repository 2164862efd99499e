//go:build !linux

package devenv

import "syscall"

// childAttr: outside Linux the children share the dev process's group.
func childAttr() *syscall.SysProcAttr { return nil }
