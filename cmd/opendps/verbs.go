package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

// The client verbs share one shape: check the flags and arguments, make a
// client, make the calls, print the result (JSON with --json, else text).
// The builders here hold that shape.

// runE is the type of cobra.Command.RunE.
type runE = func(*cobra.Command, []string) error

// clientRun returns a RunE that makes a client with newClient, calls do
// with it and prints the result: JSON with --json, else with text.
func clientRun[C, T any](newClient func() (C, error), do func(*cobra.Command, C, []string) (T, error), text func(io.Writer, T)) runE {
	return func(cmd *cobra.Command, args []string) error {
		c, err := newClient()
		if err != nil {
			return err
		}
		v, err := do(cmd, c, args)
		if err != nil {
			return err
		}
		return printResult(cmd.OutOrStdout(), v, func(w io.Writer) { text(w, v) })
	}
}

// checkThen returns a RunE that runs check and then run: a verb's own flag
// and argument checks fail before a client is made. (Not PreRunE: cobra
// runs that before it checks the required flags.)
func checkThen(check func(args []string) error, run runE) runE {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(args); err != nil {
			return err
		}
		return run(cmd, args)
	}
}

// controlRun is clientRun with the control API client.
func controlRun[T any](do func(*cobra.Command, *dpsclient.Control, []string) (T, error), text func(io.Writer, T)) runE {
	return clientRun(controlClient, do, text)
}

// serviceRun is clientRun with the service API client.
func serviceRun[T any](do func(*cobra.Command, *dpsclient.Service, []string) (T, error), text func(io.Writer, T)) runE {
	return clientRun(enrollmentClient, do, text)
}

// done is the result of a verb that changes something and returns no
// record: {key: id} with --json (e.g. {"deleted": "dev-1"}), msg as text.
type done struct{ key, id, msg string }

func (d done) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]string{d.key: d.id}) }

func printDone(w io.Writer, d done) { fmt.Fprintln(w, d.msg) }

// serviceRecord is a kind of service API record (individual enrollment,
// enrollment group, registration state) with the calls that the generic
// verbs make on it.
type serviceRecord[T any] struct {
	what  string // the kind in messages, e.g. "enrollment group"
	get   func(*dpsclient.Service, context.Context, string) (T, error)
	put   func(*dpsclient.Service, context.Context, T) (T, error) // nil for registrations
	del   func(s *dpsclient.Service, ctx context.Context, id, etag string) error
	print func(io.Writer, T)
}

// showCmd returns `show ID`, which prints the record.
func (k *serviceRecord[T]) showCmd(use, short string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: serviceRun(func(cmd *cobra.Command, s *dpsclient.Service, args []string) (T, error) {
			return k.get(s, cmd.Context(), args[0])
		}, k.print)}
}

// deleteCmd returns `delete ID [--etag E]`.
func (k *serviceRecord[T]) deleteCmd(use, short, etagHelp string) *cobra.Command {
	var etag string
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: serviceRun(func(cmd *cobra.Command, s *dpsclient.Service, args []string) (done, error) {
			return done{"deleted", args[0], "deleted " + k.what + " " + args[0]}, k.del(s, cmd.Context(), args[0], etag)
		}, printDone)}
	cmd.Flags().StringVar(&etag, "etag", "", etagHelp)
	return cmd
}

// createCmd returns `create ID` with the flags of commonFlags, which
// creates the record that build makes for ID, failing if one exists.
// attestation returns the attestation its own flags ask for, nil for a
// symmetric key.
func (k *serviceRecord[T]) createCmd(use, short string, attestation func() (*dpsclient.AttestationMechanism, error),
	build func(id string, ec dpsclient.EnrollmentCommon) T) *cobra.Command {
	var c commonFlags
	var ec dpsclient.EnrollmentCommon
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: checkThen(func([]string) error {
			att, err := attestation()
			if err != nil {
				return err
			}
			ec, err = c.common(att)
			return err
		}, serviceRun(func(cmd *cobra.Command, s *dpsclient.Service, args []string) (T, error) {
			if r, err := k.get(s, cmd.Context(), args[0]); err == nil {
				return r, fmt.Errorf("%s %s already exists (delete it first, or use set-status)", k.what, args[0])
			} else if !errors.Is(err, dpsclient.ErrServiceNotFound) {
				return r, err
			}
			return k.put(s, cmd.Context(), build(args[0], ec))
		}, k.print))}
	c.add(cmd)
	return cmd
}

// setStatusCmd returns `set-status ID enabled|disabled`; set gives the
// record read the new status before it is written back.
func (k *serviceRecord[T]) setStatusCmd(use, short string, set func(r T, status string)) *cobra.Command {
	var status string
	return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(2),
		RunE: checkThen(func(args []string) (err error) {
			status, err = parseStatus(args[1])
			return err
		}, serviceRun(func(cmd *cobra.Command, s *dpsclient.Service, args []string) (T, error) {
			r, err := k.get(s, cmd.Context(), args[0])
			if err != nil {
				return r, err
			}
			set(r, status)
			return k.put(s, cmd.Context(), r)
		}, k.print))}
}

// table prints records as fixed-width columns.
type table[T any] struct {
	format string // of a line, e.g. "%-40s %s\n"
	header []any  // the column titles
	row    func(T) []any
}

func (tb table[T]) print(w io.Writer, rs []T) {
	fmt.Fprintf(w, tb.format, tb.header...)
	for _, r := range rs {
		fmt.Fprintf(w, tb.format, tb.row(r)...)
	}
}

// pageQuery reads one page of a service API query: pageSize records after
// continuation cont; next is "" on the last page.
type pageQuery[T any] func(s *dpsclient.Service, ctx context.Context, pageSize int, cont string) (page []T, next string, err error)

// listCmd returns `list [--page-size N]`, which reads every page of query
// and prints the records as tb.
func listCmd[T any](use, short, pageHelp string, query pageQuery[T], tb table[T]) *cobra.Command {
	var pageSize int
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
		RunE: serviceRun(func(cmd *cobra.Command, s *dpsclient.Service, _ []string) ([]T, error) {
			var all []T
			for cont := ""; ; {
				page, next, err := query(s, cmd.Context(), pageSize, cont)
				if err != nil {
					return nil, err
				}
				if all = append(all, page...); next == "" {
					return all, nil
				}
				cont = next
			}
		}, tb.print)}
	cmd.Flags().IntVar(&pageSize, "page-size", 100, pageHelp)
	return cmd
}
