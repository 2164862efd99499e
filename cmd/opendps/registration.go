package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(registrationCmd) }

func registrationCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "registration", Short: "Read and delete device registration records (service API)"}
	cmd.AddCommand(registrationShowCmd(), registrationDeleteCmd(), registrationListCmd())
	return cmd
}

func registrationShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show REGID",
		Short: "Show the registration record of a device",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			r, err := s.GetRegistration(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), r, func(w io.Writer) { printRegistration(w, r) })
		},
	}
}

func registrationDeleteCmd() *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete REGID",
		Short: "Delete the registration record of a device (its hub identity stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			if err := s.DeleteRegistration(cmd.Context(), args[0], etag); err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "deleted registration %s\n", args[0])
			})
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the record still has this etag")
	return cmd
}

func registrationListCmd() *cobra.Command {
	var group string
	var pageSize int
	cmd := &cobra.Command{
		Use:   "list --group GROUPID",
		Short: "List the registration records of the devices of an enrollment group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group == "" {
				return errors.New("--group is required (the service API lists registrations per enrollment group)")
			}
			s, err := enrollmentClient()
			if err != nil {
				return err
			}
			var all []*dpsclient.DeviceRegistrationState
			for cont := ""; ; {
				page, next, err := s.QueryGroupRegistrations(cmd.Context(), group, pageSize, cont)
				if err != nil {
					return err
				}
				if all = append(all, page...); next == "" {
					break
				}
				cont = next
			}
			return printResult(cmd.OutOrStdout(), all, func(w io.Writer) {
				fmt.Fprintf(w, "%-40s %-10s %-40s %s\n", "REGISTRATION ID", "STATUS", "HUB", "DEVICE ID")
				for _, r := range all {
					fmt.Fprintf(w, "%-40s %-10s %-40s %s\n", r.RegistrationID, r.Status, r.AssignedHub, r.DeviceID)
				}
			})
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "enrollment group id")
	cmd.Flags().IntVar(&pageSize, "page-size", 100, "records per service API page")
	return cmd
}

func printRegistration(w io.Writer, r *dpsclient.DeviceRegistrationState) {
	field(w, "registration id", r.RegistrationID)
	field(w, "status", r.Status)
	field(w, "substatus", r.Substatus)
	field(w, "assigned hub", r.AssignedHub)
	field(w, "device id", r.DeviceID)
	if r.ErrorCode != 0 {
		field(w, "error", fmt.Sprintf("%d %s", r.ErrorCode, r.ErrorMessage))
	}
	field(w, "etag", r.Etag)
	if r.CreatedDateTimeUTC != nil {
		field(w, "created", r.CreatedDateTimeUTC.Format("2006-01-02T15:04:05.000Z"))
	}
	if r.LastUpdatedDateTimeUTC != nil {
		field(w, "updated", r.LastUpdatedDateTimeUTC.Format("2006-01-02T15:04:05.000Z"))
	}
}
