package main

import (
	"context"
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

// registrationRecord is the registration state for the generic verbs.
var registrationRecord = &serviceRecord[*dpsclient.DeviceRegistrationState]{what: "registration",
	get: (*dpsclient.Service).GetRegistration, del: (*dpsclient.Service).DeleteRegistration, print: printRegistration}

func registrationShowCmd() *cobra.Command {
	return registrationRecord.showCmd("show REGID", "Show the registration record of a device")
}

func registrationDeleteCmd() *cobra.Command {
	return registrationRecord.deleteCmd("delete REGID", "Delete the registration record of a device (its hub identity stays)",
		"delete only if the record still has this etag")
}

func registrationListCmd() *cobra.Command {
	var group string
	cmd := listCmd("list --group GROUPID", "List the registration records of the devices of an enrollment group",
		"records per service API page",
		func(s *dpsclient.Service, ctx context.Context, pageSize int, cont string) ([]*dpsclient.DeviceRegistrationState, string, error) {
			return s.QueryGroupRegistrations(ctx, group, pageSize, cont)
		}, table[*dpsclient.DeviceRegistrationState]{
			format: "%-40s %-10s %-40s %s\n",
			header: []any{"REGISTRATION ID", "STATUS", "HUB", "DEVICE ID"},
			row: func(r *dpsclient.DeviceRegistrationState) []any {
				return []any{r.RegistrationID, r.Status, r.AssignedHub, r.DeviceID}
			},
		})
	cmd.RunE = checkThen(func([]string) error {
		if group == "" {
			return errors.New("--group is required (the service API lists registrations per enrollment group)")
		}
		return nil
	}, cmd.RunE)
	cmd.Flags().StringVar(&group, "group", "", "enrollment group id")
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
