package main

import (
	"errors"
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

// groupRecord is the enrollment group for the generic verbs.
var groupRecord = &serviceRecord[*dpsclient.EnrollmentGroup]{what: "enrollment group",
	get: (*dpsclient.Service).GetGroup, put: (*dpsclient.Service).CreateOrUpdateGroup,
	del: (*dpsclient.Service).DeleteGroup, print: printGroup}

func groupCreateCmd() *cobra.Command {
	var signing, caRef, caRef2 string
	cmd := groupRecord.createCmd("create GROUPID [--key K --secondary-key K2 | --signing-certificate PEMFILE | --ca-ref NAME]",
		"Create an enrollment group (symmetric key unless --signing-certificate or --ca-ref)",
		func() (*dpsclient.AttestationMechanism, error) { return groupAttestation(signing, caRef, caRef2) },
		func(id string, ec dpsclient.EnrollmentCommon) *dpsclient.EnrollmentGroup {
			return &dpsclient.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: ec}
		})
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
	return groupRecord.showCmd("show GROUPID", "Show an enrollment group, keys included")
}

func groupListCmd() *cobra.Command {
	return listCmd("list", "List every enrollment group", "groups per service API page",
		(*dpsclient.Service).QueryGroups, table[*dpsclient.EnrollmentGroup]{
			format: "%-40s %-13s %s\n",
			header: []any{"GROUP ID", "ATTESTATION", "STATUS"},
			row: func(g *dpsclient.EnrollmentGroup) []any {
				return []any{g.EnrollmentGroupID, attestationType(g.Attestation), g.ProvisioningStatus}
			},
		})
}

func groupDeleteCmd() *cobra.Command {
	return groupRecord.deleteCmd("delete GROUPID", "Delete an enrollment group (registration records of its devices stay)",
		"delete only if the group still has this etag")
}

func groupSetStatusCmd() *cobra.Command {
	return groupRecord.setStatusCmd("set-status GROUPID enabled|disabled", "Enable or disable an enrollment group",
		func(g *dpsclient.EnrollmentGroup, status string) { g.ProvisioningStatus = status })
}

func printGroup(w io.Writer, g *dpsclient.EnrollmentGroup) {
	field(w, "group id", g.EnrollmentGroupID)
	printCommon(w, &g.EnrollmentCommon)
}
