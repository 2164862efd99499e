//go:build !linux

package cluster

import (
	"errors"
)

// netns is only available on Linux.
type netns struct{ loopback }

func newNetns(int) (*netns, error) {
	return nil, errors.New("cluster: network namespaces need Linux")
}
