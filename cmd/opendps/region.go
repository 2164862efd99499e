package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(regionCmd) }

// regionCmd is the `region` noun: the status of the region of the node
// the control URL points at, its membership and its snapshots
// (docs/zones.md), and disaster recovery between regions: replication,
// fencing, failover and lost writes (docs/dr-design.md, docs/runbooks/).
func regionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "region", Short: "Status, members and snapshots of a region; replication, fencing and failover between regions"}
	member := &cobra.Command{Use: "member", Short: "Members of the region's etcd cluster (one per node)"}
	member.AddCommand(memberListCmd(), memberAddCmd(), memberRemoveCmd(), memberPromoteCmd())
	snapshot := &cobra.Command{Use: "snapshot", Short: "Back up the region's state (etcd snapshot) and restore it"}
	snapshot.AddCommand(snapshotSaveCmd(), snapshotRestoreCmd())
	cmd.AddCommand(regionStatusCmd(), member, snapshot, regionFailoverCmd(), regionFenceCmd(), lostWritesCmd(),
		regionReplicationCmd())
	return cmd
}

func regionStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Nodes, members, zones, leader, health and zone redundancy of the region",
		Args:  cobra.NoArgs,
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, _ []string) (*dpsclient.RegionStatus, error) {
			return c.RegionStatus(cmd.Context())
		}, printRegionStatus),
	}
}

func printRegionStatus(w io.Writer, st *dpsclient.RegionStatus) {
	redundant := "yes"
	if !st.ZoneRedundant {
		redundant = "no: " + st.Reason
	}
	leader := st.Leader
	if leader == "" {
		leader = "none known"
	}
	fmt.Fprintf(w, "region          %s (answered by %s)\n", st.Region, st.AnsweredBy)
	fmt.Fprintf(w, "zone-redundant  %s\n", redundant)
	fmt.Fprintf(w, "leader          %s\n", leader)
	fmt.Fprintf(w, "quorum          %t (%d of %d voting members healthy)\n", st.Quorum, st.HealthyVoting, st.VotingMembers)
	if st.ExternalEtcd {
		fmt.Fprintln(w, "storage         external etcd cluster")
	}
	fmt.Fprintln(w)
	printMembers(w, st.Members)
}

func printMembers(w io.Writer, ms []dpsclient.RegionMember) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tID\tZONE\tROLE\tHEALTH\tRAFT INDEX\tNODE")
	for _, m := range ms {
		role := "follower"
		switch {
		case m.IsLeader:
			role = "leader"
		case m.IsLearner:
			role = "learner"
		}
		health := "healthy"
		if !m.Healthy {
			health = cmp.Or(m.Error, "unhealthy")
		}
		node := "not registered" // its lease expired: dead or cut off for LeaseTTL
		if m.Node != nil {
			node = "registered, device " + m.Node.Endpoints.Device
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.DisplayName(), m.ID, orDash(m.Zone), role, health, m.RaftIndex, node)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func memberListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the members with their zone, role and health",
		Args:  cobra.NoArgs,
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, _ []string) ([]dpsclient.RegionMember, error) {
			return c.RegionMembers(cmd.Context())
		}, printMembers),
	}
}

func memberAddCmd() *cobra.Command {
	var req dpsclient.AddMemberRequest
	cmd := &cobra.Command{
		Use:   "add NAME --peer-url URL [--zone Z]",
		Short: "Add a member for a new node; prints the flags the node must start with",
		Long: `Add an etcd member for a new node NAME that will listen for its peers at
--peer-url. Then start the node with the printed flags (and its own data
directory and listener addresses): it joins the region and catches up.
With --learner the member does not vote until promoted (region member
promote), so the quorum does not grow before the node has caught up.`,
		Args: cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.AddMemberResult, error) {
			req.Name = args[0]
			return c.AddMember(cmd.Context(), req)
		}, func(w io.Writer, r *dpsclient.AddMemberResult) {
			fmt.Fprintf(w, "added member %s (id %s)\n", r.Member.Name, r.Member.ID)
			fmt.Fprintf(w, "start its node with:\n  opendps serve %s \\\n    --data-dir DIR --etcd-client-addr HOST:PORT [listener addresses]\n", shellJoin(r.Flags))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.PeerURL, "peer-url", "", "peer URL of the new member, http://host:port (required)")
	f.StringVar(&req.Zone, "zone", "", "availability zone of the new node")
	f.BoolVar(&req.Learner, "learner", false, "add a non-voting learner (promote it once it caught up)")
	cmd.MarkFlagRequired("peer-url")
	return cmd
}

func memberRemoveCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a member (refuses the last member, a quorum loss, or the answering node without --force)",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.RegionMember, error) {
			return c.RemoveMember(cmd.Context(), args[0], force)
		}, func(w io.Writer, m *dpsclient.RegionMember) {
			fmt.Fprintf(w, "removed member %s (id %s)\n", m.DisplayName(), m.ID)
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "skip the checks that keep the region working")
	return cmd
}

func memberPromoteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "promote NAME",
		Short: "Make a learner a voting member (once it has caught up)",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.RegionMember, error) {
			return c.PromoteMember(cmd.Context(), args[0])
		}, func(w io.Writer, m *dpsclient.RegionMember) {
			fmt.Fprintf(w, "promoted member %s (id %s)\n", m.DisplayName(), m.ID)
		}),
	}
}

// snapshotSaved is the result of `region snapshot save`.
type snapshotSaved struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	*region.SnapshotInfo
}

func snapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save an etcd snapshot of the region's whole state to FILE",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*snapshotSaved, error) {
			file := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".part-*")
			if err != nil {
				return nil, err
			}
			defer os.Remove(tmp.Name())
			n, err := c.Snapshot(cmd.Context(), tmp)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, err
			}
			info, err := region.InspectSnapshot(tmp.Name())
			if err != nil {
				return nil, err
			}
			if err := os.Rename(tmp.Name(), file); err != nil {
				return nil, err
			}
			return &snapshotSaved{File: file, Bytes: n, SnapshotInfo: info}, nil
		}, func(w io.Writer, s *snapshotSaved) {
			fmt.Fprintf(w, "saved %s: %d bytes, revision %d, %d keys, hash %08x\n", s.File, s.Bytes, s.Revision, s.TotalKeys, s.Hash)
		}),
	}
}

// snapshotRestored is the result of `region snapshot restore`.
type snapshotRestored struct {
	DataDir string `json:"dataDir"`
	Name    string `json:"name"`
}

func snapshotRestoreCmd() *cobra.Command {
	var cfg region.RestoreConfig
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --name NAME --initial-cluster NAME=URL,...",
		Short: "Rebuild one member's data from a snapshot (offline; run it for every node of the region)",
		Long: `Rebuild DIR/etcd of node NAME from a snapshot saved with 'region snapshot
save', checking its hash. Run it for every node of the region, with the same
snapshot and the same --initial-cluster, while the nodes are stopped; then
start them as usual. The result is a new cluster holding the snapshot's
data. DIR/etcd must not exist (move the old one away).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.SnapshotPath = args[0]
			if err := region.Restore(cfg); err != nil {
				if errors.Is(err, region.ErrInvalid) || errors.Is(err, region.ErrRefused) {
					return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "region: "))
				}
				return err
			}
			res := snapshotRestored{DataDir: cfg.DataDir, Name: cfg.Name}
			return printResult(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "restored member %s into %s\nstart the node as before (same --data-dir and --name); it restarts from the restored data\n",
					cfg.Name, filepath.Join(cfg.DataDir, "etcd"))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "data directory of the node (required)")
	f.StringVar(&cfg.Name, "name", "", "name of the node (required)")
	f.StringVar(&cfg.InitialCluster, "initial-cluster", "", "every member of the restored region, NAME=http://host:port,... (required)")
	f.StringVar(&cfg.ClusterToken, "etcd-cluster-token", "", "cluster token (default opendps-REGION)")
	f.StringVar(&cfg.Region, "region", "westeurope", "region of the node (for the default token)")
	f.Uint64Var(&cfg.RevisionBump, "revision-bump", 0, "raise revisions by this much so that watchers never see them go back")
	for _, n := range []string{"data-dir", "name", "initial-cluster"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}
