package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(policyCmd) }

// rightsHelp lists the rights a policy may hold (spec §6.2).
const rightsHelp = "comma-separated rights: ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite (case-insensitive)"

func policyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Manage the shared access policies of an instance"}
	addARMFlags(cmd)
	cmd.AddCommand(policySetCmd("add", "Add a shared access policy (fails if it exists)", true),
		policySetCmd("set", "Add a shared access policy or change its rights", false),
		policyRemoveCmd(), policyListCmd(), policyRegenerateCmd())
	return cmd
}

func policySetCmd(verb, short string, createOnly bool) *cobra.Command {
	var rights string
	cmd := &cobra.Command{
		Use:   verb + " INSTANCE KEYNAME --rights RIGHTS",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.AccessPolicy, error) {
			return c.SetPolicy(cmd.Context(), args[0], args[1], rights, createOnly)
		}, printPolicy),
	}
	cmd.Flags().StringVar(&rights, "rights", "", rightsHelp+" (required)")
	cmd.MarkFlagRequired("rights")
	return cmd
}

func printPolicy(w io.Writer, p *dpsclient.AccessPolicy) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "policy:\t%s\n", p.KeyName)
	fmt.Fprintf(tw, "rights:\t%s\n", p.Rights)
	if p.PrimaryKey != "" {
		fmt.Fprintf(tw, "primary key:\t%s\n", p.PrimaryKey)
		fmt.Fprintf(tw, "secondary key:\t%s\n", p.SecondaryKey)
	}
	tw.Flush()
}

func policyRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove INSTANCE KEYNAME",
		Short: "Remove a shared access policy (not the last one)",
		Args:  cobra.ExactArgs(2),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (done, error) {
			return done{"removed", args[1], "removed policy " + args[1] + " from " + args[0]}, c.RemovePolicy(cmd.Context(), args[0], args[1])
		}, printDone),
	}
}

func policyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List the shared access policies of an instance (without keys; see `instance keys`)",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) ([]dpsclient.AccessPolicy, error) {
			svc, err := c.GetInstance(cmd.Context(), args[0])
			if err != nil {
				return nil, err
			}
			return svc.Properties.AuthorizationPolicies, nil
		}, func(w io.Writer, ps []dpsclient.AccessPolicy) {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "POLICY\tRIGHTS")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\n", p.KeyName, p.Rights)
			}
			tw.Flush()
		}),
	}
}

func policyRegenerateCmd() *cobra.Command {
	var which string
	cmd := &cobra.Command{
		Use:   "regenerate INSTANCE KEYNAME --key primary|secondary",
		Short: "Replace the primary or secondary key of a policy with a new random one",
		Args:  cobra.ExactArgs(2),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.AccessPolicy, error) {
			return c.RegenerateKey(cmd.Context(), args[0], args[1], which)
		}, printPolicy),
	}
	cmd.Flags().StringVar(&which, "key", "", "which key to replace: primary or secondary (required)")
	cmd.MarkFlagRequired("key")
	return cmd
}
