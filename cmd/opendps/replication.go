package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func regionReplicationCmd() *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "replication [--region R]",
		Short: "Show replication to and from the region: lag, revisions, phase",
		Long: `Show the replication streams of region R (default: --control-url's): one per
DR-enabled instance primary there, with its destination, phase, the newest
source revision and the one the destination acknowledged, and the lag (the
age of the oldest unacknowledged change; 0 when caught up). Then the copies
the region holds as secondary, with the last applied source revision.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadClientEnv()
			if err != nil {
				return err
			}
			var rep *dpsclient.Replication
			err = regionControl(env, region, func(c *dpsclient.Control) error {
				rep, err = c.Replication(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), rep, func(w io.Writer) { printReplication(w, rep) })
		},
	}
	cmd.Flags().StringVar(&region, "region", "", "the region to ask")
	return cmd
}

func printReplication(w io.Writer, rep *dpsclient.Replication) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Streams) == 0 {
		fmt.Fprintln(tw, "no outgoing streams")
	} else {
		fmt.Fprintln(tw, "INSTANCE\tTO\tEPOCH\tPHASE\tSOURCE REV\tACKED REV\tLAG\tLAST BATCH\tCONNECTED\tERROR")
		for _, s := range rep.Streams {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\t%t\t%s\n", s.Instance, s.Destination, s.Epoch, s.Phase,
				s.SourceRev, s.AckedRev, ms(s.LagMs), ms(s.LastLagMs), s.Connected, s.Error)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Incoming) == 0 {
		fmt.Fprintln(tw, "no incoming copies")
	} else {
		fmt.Fprintln(tw, "INSTANCE\tFROM\tEPOCH\tPHASE\tREV\tSOURCE TIME\tAPPLIED")
		for _, s := range rep.Incoming {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", s.Instance, s.Source, s.Epoch, s.Phase, s.Rev,
				s.SourceTime.UTC().Format(time.RFC3339Nano), s.AppliedAt.UTC().Format(time.RFC3339Nano))
		}
	}
	tw.Flush()
}

func ms(v float64) string { return fmt.Sprintf("%.1fms", v) }
