package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(certificateCmd) }

func certificateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "certificate", Short: "Manage the CA certificates of an instance (with proof of possession)"}
	addARMFlags(cmd)
	cmd.AddCommand(certUploadCmd(), certShowCmd(), certListCmd(), certDeleteCmd(), certCodeCmd(), certVerifyCmd())
	return cmd
}

// readCertFile returns the text of a PEM (or base64 DER) certificate file.
func readCertFile(path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("--file is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// etagOf returns etag, or the current etag of the certificate when empty.
func etagOf(ctx context.Context, c *dpsclient.Control, inst, name, etag string) (string, error) {
	if etag != "" {
		return etag, nil
	}
	cert, err := c.GetCertificate(ctx, inst, name)
	if err != nil {
		return "", err
	}
	return cert.Etag, nil
}

func printCert(w io.Writer, c *dpsclient.Certificate) {
	p := c.Properties
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", c.Name)
	fmt.Fprintf(tw, "subject:\t%s\n", p.Subject)
	fmt.Fprintf(tw, "thumbprint:\t%s\n", p.Thumbprint)
	fmt.Fprintf(tw, "expiry:\t%s\n", p.Expiry)
	fmt.Fprintf(tw, "verified:\t%t\n", p.IsVerified)
	if p.VerificationCode != "" {
		fmt.Fprintf(tw, "verification code:\t%s\n", p.VerificationCode)
	}
	fmt.Fprintf(tw, "etag:\t%s\n", c.Etag)
	tw.Flush()
}

func certUploadCmd() *cobra.Command {
	var file, etag string
	var verified, force bool
	cmd := &cobra.Command{
		Use:   "upload INSTANCE NAME --file PEM",
		Short: "Upload a CA certificate (replacing one needs --etag or --force)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readCertFile(file)
			if err != nil {
				return err
			}
			c, err := controlClient()
			if err != nil {
				return err
			}
			if force && etag == "" {
				etag = "*"
			}
			cert, err := c.PutCertificate(cmd.Context(), args[0], args[1], text, verified, etag)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), cert, func(w io.Writer) { printCert(w, cert) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "file", "", "PEM or base64 DER file of the certificate (required)")
	f.BoolVar(&verified, "verified", false, "mark the certificate verified without proof of possession (self-attested)")
	f.StringVar(&etag, "etag", "", "etag of the certificate being replaced")
	f.BoolVar(&force, "force", false, "replace an existing certificate whatever its etag")
	cmd.MarkFlagRequired("file")
	return cmd
}

func certShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show INSTANCE NAME",
		Short: "Show a CA certificate",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			cert, err := c.GetCertificate(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), cert, func(w io.Writer) { printCert(w, cert) })
		},
	}
}

func certListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List the CA certificates of an instance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			list, err := c.ListCertificates(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), list, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSUBJECT\tVERIFIED\tEXPIRY\tTHUMBPRINT")
				for _, c := range list {
					p := c.Properties
					fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", c.Name, p.Subject, p.IsVerified, p.Expiry, p.Thumbprint)
				}
				tw.Flush()
			})
		},
	}
}

func certDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete INSTANCE NAME",
		Short: "Delete a CA certificate",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			tag, err := etagOf(cmd.Context(), c, args[0], args[1], etag)
			if err != nil {
				return err
			}
			if err := c.DeleteCertificate(cmd.Context(), args[0], args[1], tag); err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), map[string]string{"deleted": args[1]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted certificate %s of %s\n", args[1], args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the certificate has this etag (default: its current etag)")
	return cmd
}

func certCodeCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "verification-code INSTANCE NAME",
		Short: "Generate a proof-of-possession code: sign a certificate with CN=<code> with the CA key, then `verify` it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := controlClient()
			if err != nil {
				return err
			}
			tag, err := etagOf(cmd.Context(), c, args[0], args[1], etag)
			if err != nil {
				return err
			}
			cert, err := c.GenerateVerificationCode(cmd.Context(), args[0], args[1], tag)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), cert, func(w io.Writer) { printCert(w, cert) })
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "etag the certificate must have (default: its current etag)")
	return cmd
}

func certVerifyCmd() *cobra.Command {
	var file, etag string
	cmd := &cobra.Command{
		Use:   "verify INSTANCE NAME --file PEM",
		Short: "Prove possession of the CA key with a certificate whose CN is the verification code",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readCertFile(file)
			if err != nil {
				return err
			}
			c, err := controlClient()
			if err != nil {
				return err
			}
			tag, err := etagOf(cmd.Context(), c, args[0], args[1], etag)
			if err != nil {
				return err
			}
			cert, err := c.VerifyCertificate(cmd.Context(), args[0], args[1], tag, text)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), cert, func(w io.Writer) { printCert(w, cert) })
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "PEM or base64 DER file of the verification certificate (required)")
	cmd.Flags().StringVar(&etag, "etag", "", "etag the certificate must have (default: its current etag)")
	cmd.MarkFlagRequired("file")
	return cmd
}
