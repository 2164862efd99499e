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

// certRun returns the RunE of a verb on certificate NAME of INSTANCE that
// needs its etag: *etag, or else the certificate's current etag.
func certRun[T any](etag *string, do func(c *dpsclient.Control, ctx context.Context, inst, name, etag string) (T, error), text func(io.Writer, T)) runE {
	return controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (T, error) {
		tag, err := etagOf(cmd.Context(), c, args[0], args[1], *etag)
		if err != nil {
			var zero T
			return zero, err
		}
		return do(c, cmd.Context(), args[0], args[1], tag)
	}, text)
}

func certUploadCmd() *cobra.Command {
	var file, etag, text string
	var verified, force bool
	cmd := &cobra.Command{
		Use:   "upload INSTANCE NAME --file PEM",
		Short: "Upload a CA certificate (replacing one needs --etag or --force)",
		Args:  cobra.ExactArgs(2),
		RunE: checkThen(func([]string) (err error) {
			text, err = readCertFile(file)
			return err
		}, controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.Certificate, error) {
			ifMatch := etag
			if force && ifMatch == "" {
				ifMatch = "*"
			}
			return c.PutCertificate(cmd.Context(), args[0], args[1], text, verified, ifMatch)
		}, printCert)),
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
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) (*dpsclient.Certificate, error) {
			return c.GetCertificate(cmd.Context(), args[0], args[1])
		}, printCert),
	}
}

func certListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List the CA certificates of an instance",
		Args:  cobra.ExactArgs(1),
		RunE: controlRun(func(cmd *cobra.Command, c *dpsclient.Control, args []string) ([]dpsclient.Certificate, error) {
			return c.ListCertificates(cmd.Context(), args[0])
		}, func(w io.Writer, list []dpsclient.Certificate) {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBJECT\tVERIFIED\tEXPIRY\tTHUMBPRINT")
			for _, c := range list {
				p := c.Properties
				fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", c.Name, p.Subject, p.IsVerified, p.Expiry, p.Thumbprint)
			}
			tw.Flush()
		}),
	}
}

func certDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete INSTANCE NAME",
		Short: "Delete a CA certificate",
		Args:  cobra.ExactArgs(2),
		RunE: certRun(&etag, func(c *dpsclient.Control, ctx context.Context, inst, name, tag string) (done, error) {
			return done{"deleted", name, "deleted certificate " + name + " of " + inst}, c.DeleteCertificate(ctx, inst, name, tag)
		}, printDone),
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
		RunE:  certRun(&etag, (*dpsclient.Control).GenerateVerificationCode, printCert),
	}
	cmd.Flags().StringVar(&etag, "etag", "", "etag the certificate must have (default: its current etag)")
	return cmd
}

func certVerifyCmd() *cobra.Command {
	var file, etag, proof string
	cmd := &cobra.Command{
		Use:   "verify INSTANCE NAME --file PEM",
		Short: "Prove possession of the CA key with a certificate whose CN is the verification code",
		Args:  cobra.ExactArgs(2),
		RunE: checkThen(func([]string) (err error) {
			proof, err = readCertFile(file)
			return err
		}, certRun(&etag, func(c *dpsclient.Control, ctx context.Context, inst, name, tag string) (*dpsclient.Certificate, error) {
			return c.VerifyCertificate(ctx, inst, name, tag, proof)
		}, printCert)),
	}
	cmd.Flags().StringVar(&file, "file", "", "PEM or base64 DER file of the verification certificate (required)")
	cmd.Flags().StringVar(&etag, "etag", "", "etag the certificate must have (default: its current etag)")
	cmd.MarkFlagRequired("file")
	return cmd
}
