package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(hubCmd) }

// hubSubcommands are constructors of further `opendps hub` verbs defined
// in other files (the hub simulator's `serve`); append to it from an init.
var hubSubcommands []func() *cobra.Command

// hubCmd is the `hub` noun: the linked hubs of an instance (add, remove,
// list) plus the verbs of hubSubcommands.
func hubCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "hub", Short: "Link IoT hubs to an instance (and run the hub simulator)"}
	addARMFlags(cmd)
	cmd.AddCommand(hubAddCmd(), hubRemoveCmd(), hubListCmd())
	for _, f := range hubSubcommands {
		cmd.AddCommand(f())
	}
	return cmd
}

func hubAddCmd() *cobra.Command {
	var cs, location string
	var weight int
	var apply bool
	cmd := &cobra.Command{
		Use:   "add INSTANCE --connection-string CS",
		Short: "Link an IoT hub to an instance (or update a linked hub); the hub must answer and accept the key",
		Args:  cobra.ExactArgs(1),
		RunE: checkThen(func([]string) error {
			if weight < 1 || weight > 1000 {
				return fmt.Errorf("--weight must be 1 to 1000, not %d", weight)
			}
			return nil
		}, controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.IotHub, error) {
			return c.LinkHub(cmd.Context(), args[0], dpsclient.IotHub{ConnectionString: cs, Location: location,
				AllocationWeight: weight, ApplyAllocationPolicy: &apply})
		}, func(w io.Writer, h *dpsclient.IotHub) { printHubs(w, []dpsclient.IotHub{*h}) })),
	}
	f := cmd.Flags()
	f.StringVar(&cs, "connection-string", "", "service connection string of the hub, e.g. its iothubowner policy (required)")
	f.IntVar(&weight, "weight", 1, "allocation weight, 1 to 1000")
	f.BoolVar(&apply, "apply-allocation-policy", true, "let the allocation policy assign devices to this hub")
	f.StringVar(&location, "location", "", "region of the hub (default: the instance's region)")
	cmd.MarkFlagRequired("connection-string")
	return cmd
}

func printHubs(w io.Writer, hs []dpsclient.IotHub) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HUB\tLOCATION\tWEIGHT\tAPPLY ALLOCATION POLICY")
	for _, h := range hs {
		apply := h.ApplyAllocationPolicy == nil || *h.ApplyAllocationPolicy
		fmt.Fprintf(tw, "%s\t%s\t%d\t%t\n", h.Name, h.Location, h.AllocationWeight, apply)
	}
	tw.Flush()
}

func hubRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove INSTANCE HOST",
		Short: "Unlink the hub of host name HOST from an instance",
		Args:  cobra.ExactArgs(2),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (done, error) {
			return done{"removed", args[1], "unlinked hub " + args[1] + " from " + args[0]}, c.UnlinkHub(cmd.Context(), args[0], args[1])
		}, printDone),
	}
}

func hubListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List the hubs linked to an instance",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) ([]dpsclient.IotHub, error) {
			return c.ListHubs(cmd.Context(), args[0])
		}, printHubs),
	}
}
