package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

// Failover commands (docs/dr-design.md, "Failover"; docs/runbooks/):
//
//	opendps region failover --region R [--planned] [--force] [--instance N ...] [--to T]
//	opendps region fence --region R [--instance N ...] [--new-primary T]
//	opendps region lost-writes [--instance N] [--region R]
//	opendps region lost-writes delete INSTANCE EPOCH [--region R]
//	opendps instance failover NAME [--force] [--unplanned] [--to T]
//
// They pick a region's control API from the connection file (Regions);
// --control-url, when given, wins.

// directFenceBudget bounds the CLI's fence of a lost region.
const directFenceBudget = 2 * time.Second

// failoverTimeout bounds a failover command (a planned one drains).
const failoverTimeout = 2 * time.Minute

// regionControl calls fn with a client of region's control API, trying its
// nodes in turn until one answers (an error answer is an answer). An
// explicit --control-url, or an empty region, means the default control
// API.
func regionControl(env *clientEnv, region string, fn func(*dpsclient.Control) error) error {
	urls := []string{env.ControlURL}
	if region != "" && clientFlags.control == "" {
		if urls = env.Conn.RegionControl(region); len(urls) == 0 {
			return fmt.Errorf("the connection file lists no control API of region %s: pass --control-url", region)
		}
	}
	if urls[0] == "" {
		return errors.New("no control API URL: pass --control-url or a --connection file")
	}
	if env.Token == "" {
		return errors.New("no operator token: pass --token or a --connection file")
	}
	var errs []error
	for _, u := range urls {
		err := fn(dpsclient.NewControl(u, env.Token, env.HTTP))
		var ce *dpsclient.ControlError
		if err == nil || errors.As(err, &ce) {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pairOf is the secondary of region's instances: from the connection
// file, else the built-in catalog.
func pairOf(conn *dpsclient.Connection, region string) string {
	for _, r := range conn.Regions {
		if r.Name == region && r.Pair != "" {
			return r.Pair
		}
	}
	if r, err := regions.Builtin().Lookup(region); err == nil {
		return r.PairedRegion
	}
	return ""
}

func regionFailoverCmd() *cobra.Command {
	var req dpsclient.FailoverRequest
	var to string
	cmd := &cobra.Command{
		Use:   "failover --region R [--planned] [--force] [--instance N ...]",
		Short: "Promote the secondary region of R's instances (run against the secondary side)",
		Long: `Fail over every DR-enabled instance whose primary is region R (or the
--instance ones) to its secondary region, whose control API is called (--to,
default R's pair). Unplanned, the CLI first tries to fence R through R's own
control API (2 s, best effort); the report says per instance up to which
revision and source time the data was replicated: writes to R after that may
be lost (see 'region lost-writes' once R is back). --planned fences R over the
peer link and waits for replication to drain first: nothing is lost.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			if to == "" {
				to = pairOf(env.Conn, req.From)
			}
			if !req.Planned {
				req.FencedDirectly = fenceDirectly(cmd.Context(), env, req.From, req.Instances, to)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), failoverTimeout)
			defer cancel()
			var rep *dpsclient.FailoverReport
			err = regionControl(env, to, func(c *dpsclient.Control) error {
				rep, err = c.Failover(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), rep, func(w io.Writer) { printFailover(w, rep) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.From, "region", "", "the region to fail over from (required)")
	f.StringVar(&to, "to", "", "the region to promote (default: the pair of --region)")
	f.BoolVar(&req.Planned, "planned", false, "fence and drain first: no data loss (the region must be healthy)")
	f.BoolVar(&req.Force, "force", false, "promote copies still in their base copy, ignore the cool-down")
	f.StringArrayVar(&req.Instances, "instance", nil, "fail over only this instance (repeatable)")
	cmd.MarkFlagRequired("region")
	return cmd
}

// fenceDirectly tries to fence region through its own control API and
// reports whether every instance it answered for was fenced.
func fenceDirectly(ctx context.Context, env *clientEnv, region string, instances []string, newPrimary string) bool {
	if len(env.Conn.RegionControl(region)) == 0 || clientFlags.control != "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, directFenceBudget)
	defer cancel()
	var res *dpsclient.FenceResult
	err := regionControl(env, region, func(c *dpsclient.Control) error {
		var err error
		res, err = c.Fence(ctx, dpsclient.FenceRequest{Primary: region, Instances: instances, NewPrimary: newPrimary})
		return err
	})
	if err != nil {
		errf("could not fence %s directly (it is fenced when it comes back): %v", region, err)
		return false
	}
	for _, it := range res.Items {
		if it.Status != "fenced" {
			errf("%s did not fence %s: %s", region, it.Instance, it.Reason)
			return false
		}
	}
	errf("fenced %d instance(s) of %s directly", len(res.Items), region)
	return true
}

func printFailover(w io.Writer, rep *dpsclient.FailoverReport) {
	kind := "unplanned"
	if rep.Planned {
		kind = "planned"
	}
	fmt.Fprintf(w, "%s failover from %s to %s in %v\n\n", kind, orDash(rep.Region), rep.To, rep.Duration.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tSTATUS\tEPOCH\tLAST REPLICATED REV\tLAST REPLICATED TIME\tMAY HAVE LOST WRITES AFTER\tFENCED DIRECTLY\tREASON")
	for _, it := range rep.Items {
		last, lost := "-", "-"
		if !it.LastReplicatedTime.IsZero() {
			last = it.LastReplicatedTime.UTC().Format(time.RFC3339Nano)
		}
		if it.Status == "promoted" {
			lost = last
			if rep.Planned {
				lost = "nothing lost (drained)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", it.Instance, it.Status, it.Epoch, it.LastReplicatedRev,
			last, lost, yesNo(it.OldPrimaryFenced), orDash(it.Reason))
	}
	tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func regionFenceCmd() *cobra.Command {
	var req dpsclient.FenceRequest
	cmd := &cobra.Command{
		Use:   "fence --region R [--instance N ...] [--new-primary T]",
		Short: "Stop region R accepting writes for its DR-enabled instances (run against R)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			var res *dpsclient.FenceResult
			err = regionControl(env, req.Primary, func(c *dpsclient.Control) error {
				res, err = c.Fence(cmd.Context(), req)
				return err
			})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), res, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "INSTANCE\tSTATUS\tEPOCH\tSOURCE REV\tREASON")
				for _, it := range res.Items {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", it.Instance, it.Status, it.Epoch, it.SourceRev, orDash(it.Reason))
				}
				tw.Flush()
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Primary, "region", "", "the region to fence (its control API is called; default: --control-url's)")
	f.StringVar(&req.NewPrimary, "new-primary", "", "only instances whose secondary is this region")
	f.StringArrayVar(&req.Instances, "instance", nil, "fence only this instance (repeatable)")
	f.BoolVar(&req.Undo, "undo", false, "lift the fence (the instances become writable again)")
	return cmd
}

func lostWritesCmd() *cobra.Command {
	var instance, region string
	cmd := &cobra.Command{
		Use:   "lost-writes [--instance N] [--region R]",
		Short: "List the writes an old primary accepted that never reached the new primary",
		Long: `List the lost-writes reports kept by region R (default: --control-url's), the
old primary: one per instance and failover, with every change it accepted
after the last revision the new primary acknowledged. Nothing in them is
merged; delete a report once dealt with.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			var reps []dpsclient.LostWrites
			err = regionControl(env, region, func(c *dpsclient.Control) error {
				reps, err = c.LostWrites(cmd.Context(), instance)
				return err
			})
			if err != nil {
				return err
			}
			if reps == nil {
				reps = []dpsclient.LostWrites{}
			}
			return printResult(cmd.OutOrStdout(), reps, func(w io.Writer) { printLostWrites(w, reps) })
		},
	}
	cmd.PersistentFlags().StringVar(&region, "region", "", "the region keeping the reports (the old primary)")
	cmd.Flags().StringVar(&instance, "instance", "", "only the reports of this instance")
	cmd.AddCommand(lostWritesDeleteCmd(&region))
	return cmd
}

func printLostWrites(w io.Writer, reps []dpsclient.LostWrites) {
	if len(reps) == 0 {
		fmt.Fprintln(w, "no lost-writes reports")
		return
	}
	for i, r := range reps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		complete := "complete"
		if !r.Complete {
			complete = "INCOMPLETE: history compacted or report cut, deletions may be missing"
		}
		fmt.Fprintf(w, "instance %s: demoted in %s from epoch %d to %d (new primary %s) at %s\n",
			r.Instance, r.Region, r.OldEpoch, r.NewEpoch, r.NewPrimary, r.DetectedAt.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "%d write(s) after revision %d, %s\n", len(r.Writes), r.AckedRev, complete)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		if len(r.Writes) > 0 {
			fmt.Fprintln(tw, "  REV\tCHANGE\tKEY")
		}
		for _, lw := range r.Writes {
			change := "put"
			if lw.Deleted {
				change = "delete"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\n", lw.Rev, change, lw.Key)
		}
		tw.Flush()
	}
}

func lostWritesDeleteCmd(region *string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete INSTANCE EPOCH",
		Short: "Delete the lost-writes report of INSTANCE superseded at EPOCH",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			epoch, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil {
				return fmt.Errorf("epoch %q is not a number", args[1])
			}
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			err = regionControl(env, *region, func(c *dpsclient.Control) error {
				return c.DeleteLostWrites(cmd.Context(), args[0], epoch)
			})
			if err != nil {
				return err
			}
			d := done{key: "deleted", id: args[0] + "/" + args[1], msg: "deleted the lost-writes report of " + args[0] + " at epoch " + args[1]}
			return printResult(cmd.OutOrStdout(), d, func(w io.Writer) { printDone(w, d) })
		},
	}
}

func instanceFailoverCmd() *cobra.Command {
	var force, unplanned bool
	var to string
	cmd := &cobra.Command{
		Use:   "failover NAME [--to REGION] [--force]",
		Short: "Planned failover of one instance to its secondary region (no data loss)",
		Long: `Fence the instance in its primary region, wait until replication drained, and
make its secondary region (--to, default: from the connection file or the
instance's secondary location) the primary. After a failover, 'instance
failover NAME --to HOME' moves it home.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			if to == "" && clientFlags.control == "" {
				if to, err = secondaryOf(cmd.Context(), env, args[0]); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), failoverTimeout)
			defer cancel()
			var rep *dpsclient.FailoverReport
			err = regionControl(env, to, func(c *dpsclient.Control) error {
				rep, err = c.InstanceFailover(ctx, args[0], !unplanned, force)
				return err
			})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), rep, func(w io.Writer) { printFailover(w, rep) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "the region to promote (default: the instance's secondary)")
	f.BoolVar(&force, "force", false, "ignore the cool-down and an incomplete copy")
	f.BoolVar(&unplanned, "unplanned", false, "do not fence and drain first (the primary is lost)")
	return cmd
}

// secondaryOf finds the region an instance fails over to: the pair of its
// region in the connection file, else its secondary location as the
// default control API shows it.
func secondaryOf(ctx context.Context, env *clientEnv, name string) (string, error) {
	for _, in := range env.Conn.Instances {
		if in.Name == name && in.Region != "" {
			if p := pairOf(env.Conn, in.Region); p != "" {
				return p, nil
			}
		}
	}
	var ps *dpsclient.ProvisioningService
	err := regionControl(env, "", func(c *dpsclient.Control) error {
		var err error
		ps, err = c.GetInstance(ctx, name)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("cannot tell the secondary region of %s (pass --to): %w", name, err)
	}
	if s := strings.TrimSpace(ps.Properties.SecondaryLocation); s != "" {
		return regions.Normalize(s), nil
	}
	return "", fmt.Errorf("instance %s has no secondary region (data residency?): pass --to to try anyway", name)
}
