package region

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Snapshot streams a snapshot of the whole keyspace from the member of
// this node (etcd Maintenance.Snapshot): a bbolt database followed by its
// SHA-256, which Restore checks. The caller closes the reader.
func (r *Region) Snapshot(ctx context.Context) (io.ReadCloser, error) {
	rc, err := r.cli.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("region: snapshot: %w", err)
	}
	return rc, nil
}

// SnapshotInfo describes a snapshot file.
type SnapshotInfo struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKeys"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version,omitempty"`
}

// InspectSnapshot reads the header of a snapshot file (etcdutl snapshot
// status).
func InspectSnapshot(path string) (*SnapshotInfo, error) {
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return nil, fmt.Errorf("region: snapshot %s: %w", path, err)
	}
	return &SnapshotInfo{Hash: st.Hash, Revision: st.Revision, TotalKeys: st.TotalKey, TotalSize: st.TotalSize, Version: st.Version}, nil
}

// RestoreConfig says how to rebuild one member's data from a snapshot.
// Every member of the restored region is rebuilt from the same snapshot
// with the same InitialCluster and ClusterToken; the result is a new
// cluster that holds the snapshot's data.
type RestoreConfig struct {
	// SnapshotPath is the file `region snapshot save` wrote. Required.
	SnapshotPath string
	// DataDir is the node's data directory; the member is written to
	// DataDir/etcd, which must not exist. Required.
	DataDir string
	// Name of the member (the node's --name). Required.
	Name string
	// InitialCluster lists every member of the restored region,
	// name=peerURL,...; Name's entry gives its peer URL. Required.
	InitialCluster string
	// ClusterToken is the token of the restored cluster (empty:
	// "opendps-" + Region).
	ClusterToken string
	// Region, for the default ClusterToken.
	Region string
	// RevisionBump raises the revision by this much (and marks the old
	// ones compacted), so that watchers never see revisions go back.
	RevisionBump uint64
}

// Restore writes DataDir/etcd from a snapshot with etcd's own restore
// (etcdutl), checking the snapshot's hash. Start the node afterwards with
// the same data directory and name: it restarts from the restored data.
func Restore(cfg RestoreConfig) error {
	if cfg.SnapshotPath == "" || cfg.DataDir == "" || cfg.Name == "" || cfg.InitialCluster == "" {
		return fmt.Errorf("%w: restore needs a snapshot, a data directory, a name and the initial cluster", ErrInvalid)
	}
	urls, err := types.NewURLsMap(cfg.InitialCluster)
	if err != nil {
		return fmt.Errorf("%w: initial cluster %q: %v", ErrInvalid, cfg.InitialCluster, err)
	}
	peers, ok := urls[cfg.Name]
	if !ok {
		return fmt.Errorf("%w: the initial cluster has no member %s", ErrInvalid, cfg.Name)
	}
	out := filepath.Join(cfg.DataDir, "etcd")
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%w: %s exists: move it away first (it is the member being replaced)", ErrRefused, out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	token := cfg.ClusterToken
	if token == "" {
		token = "opendps-" + cfg.Region
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath: cfg.SnapshotPath, Name: cfg.Name, OutputDataDir: out,
		PeerURLs: peers.StringSlice(), InitialCluster: cfg.InitialCluster, InitialClusterToken: token,
		RevisionBump: cfg.RevisionBump, MarkCompacted: cfg.RevisionBump > 0,
	})
	if err != nil {
		os.RemoveAll(out)
		return fmt.Errorf("region: restore %s: %w", cfg.SnapshotPath, explainRestore(err))
	}
	return nil
}

func explainRestore(err error) error {
	if strings.Contains(err.Error(), "snapshot file integrity check failed") {
		return fmt.Errorf("%w (the file is damaged or not a snapshot)", err)
	}
	return err
}
