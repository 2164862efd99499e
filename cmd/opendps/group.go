package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(groupCmd) }

func groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Manage enrollment groups (service API)"}
	cmd.AddCommand(groupCreateCmd(), groupShowCmd(), groupListCmd(), groupDeleteCmd(), groupSetStatusCmd())
	return cmd
}

func groupCreateCmd() *cobra.Command {
	var c commonFlags
	var signing, caRef, caRef2 string
	cmd := &cobra.Command{
		Use:   "create GROUPID [--key K --secondary-key K2 | --signing-certificate PEMFILE | --ca-ref NAME]",
		Short: "Create an enrollment group (symmetric key unless --signing-certificate or --ca-ref)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			att, err := groupAttestation(signing, caRef, caRef2)
			if err != nil {
				return err
			}
			ec, err := c.common(att)
			if err != nil {
				return err
			}
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			if _, err := s.GetGroup(cmd.Context(), args[0]); err == nil {
				return fmt.Errorf("enrollment group %s already exists (delete it first, or use set-status)", args[0])
			} else if !errors.Is(err, dpsclient.ErrServiceNotFound) {
				return err
			}
			g, err := s.CreateOrUpdateGroup(cmd.Context(), &dpsclient.EnrollmentGroup{EnrollmentGroupID: args[0], EnrollmentCommon: ec})
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), g, func(w io.Writer) { printGroup(w, g) })
		},
	}
	c.add(cmd)
	f := cmd.Flags()
	f.StringVar(&signing, "signing-certificate", "", "X.509 attestation by this signing (CA or intermediate) certificate, PEM file")
	f.StringVar(&caRef, "ca-ref", "", "X.509 attestation by this verified CA certificate of the instance (name)")
	f.StringVar(&caRef2, "secondary-ca-ref", "", "secondary CA certificate name (with --ca-ref)")
	return cmd
}

// groupAttestation returns the X.509 attestation asked for, or nil for a
// symmetric key.
func groupAttestation(signing, caRef, caRef2 string) (*dpsclient.AttestationMechanism, error) {
	switch {
	case signing != "" && caRef != "":
		return nil, errors.New("--signing-certificate and --ca-ref are exclusive")
	case caRef2 != "" && caRef == "":
		return nil, errors.New("--secondary-ca-ref needs --ca-ref")
	case signing != "":
		pem, err := os.ReadFile(signing)
		if err != nil {
			return nil, err
		}
		return &dpsclient.AttestationMechanism{Type: "x509", X509: x509WithCertificates(string(pem), true)}, nil
	case caRef != "":
		return &dpsclient.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{
			CAReferences: &model.X509CAReferences{Primary: caRef, Secondary: caRef2}}}, nil
	}
	return nil, nil
}

func groupShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show GROUPID",
		Short: "Show an enrollment group, keys included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			g, err := s.GetGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), g, func(w io.Writer) { printGroup(w, g) })
		},
	}
}

func groupListCmd() *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every enrollment group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			var all []*dpsclient.EnrollmentGroup
			for cont := ""; ; {
				page, next, err := s.QueryGroups(cmd.Context(), pageSize, cont)
				if err != nil {
					return err
				}
				if all = append(all, page...); next == "" {
					break
				}
				cont = next
			}
			return printResult(cmd.OutOrStdout(), all, func(w io.Writer) {
				fmt.Fprintf(w, "%-40s %-13s %s\n", "GROUP ID", "ATTESTATION", "STATUS")
				for _, g := range all {
					fmt.Fprintf(w, "%-40s %-13s %s\n", g.EnrollmentGroupID, attestationType(g.Attestation), g.ProvisioningStatus)
				}
			})
		},
	}
	cmd.Flags().IntVar(&pageSize, "page-size", 100, "groups per service API page")
	return cmd
}

func groupDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete GROUPID",
		Short: "Delete an enrollment group (registration records of its devices stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			if err := s.DeleteGroup(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted enrollment group %s\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the group still has this etag")
	return cmd
}

func groupSetStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set-status GROUPID enabled|disabled",
		Short: "Enable or disable an enrollment group",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			status, err := parseStatus(args[1])
			if err != nil {
				return err
			}
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			g, err := s.GetGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			g.ProvisioningStatus = status
			if g, err = s.CreateOrUpdateGroup(cmd.Context(), g); err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), g, func(w io.Writer) { printGroup(w, g) })
		},
	}
}

func printGroup(w io.Writer, g *dpsclient.EnrollmentGroup) {
	field(w, "group id", g.EnrollmentGroupID)
	printCommon(w, &g.EnrollmentCommon)
}
