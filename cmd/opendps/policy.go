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
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			p, err := c.SetPolicy(cmd.Context(), args[0], args[1], rights, createOnly)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), p, func(w io.Writer) { printPolicy(w, p) })
		},
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
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			if err := c.RemovePolicy(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), map[string]string{"removed": args[1]}, func(w io.Writer) {
				fmt.Fprintf(w, "removed policy %s from %s\n", args[1], args[0])
			})
		},
	}
}

func policyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List the shared access policies of an instance (without keys; see `instance keys`)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			svc, err := c.GetInstance(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			ps := svc.Properties.AuthorizationPolicies
			return printResult(cmd.OutOrStdout(), ps, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "POLICY\tRIGHTS")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\n", p.KeyName, p.Rights)
				}
				tw.Flush()
			})
		},
	}
}

func policyRegenerateCmd() *cobra.Command {
	var which string
	cmd := &cobra.Command{
		Use:   "regenerate INSTANCE KEYNAME --key primary|secondary",
		Short: "Replace the primary or secondary key of a policy with a new random one",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			p, err := c.RegenerateKey(cmd.Context(), args[0], args[1], which)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), p, func(w io.Writer) { printPolicy(w, p) })
		},
	}
	cmd.Flags().StringVar(&which, "key", "", "which key to replace: primary or secondary (required)")
	cmd.MarkFlagRequired("key")
	return cmd
}
