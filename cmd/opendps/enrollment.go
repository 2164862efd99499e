package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(enrollmentCmd) }

// enrollmentClient returns a service API client from the connection file
// or --service-connection-string.
func enrollmentClient() (*dpsclient.Service, error) {
	env, err := loadClientEnv()
	if err != nil {
		return nil, err
	}
	if env.ServiceCS == "" {
		return nil, errors.New("no service connection string: start `opendps dev`, or pass --service-connection-string (env OPENDPS_SERVICE_CONNECTION_STRING)")
	}
	return dpsclient.NewService(env.ServiceCS, env.HTTP)
}

// commonFlags are the enrollment settings shared by enrollments and groups.
type commonFlags struct {
	key, secondaryKey string
	hubs              []string
	policy            string
	disabled, edge    bool
	twin              string
}

func (c *commonFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.key, "key", "", "primary symmetric key, base64 (generated when omitted)")
	f.StringVar(&c.secondaryKey, "secondary-key", "", "secondary symmetric key, base64 (generated when omitted)")
	f.StringArrayVar(&c.hubs, "iot-hub", nil, "linked hub host name the devices may be assigned to (repeatable; default all)")
	f.StringVar(&c.policy, "allocation-policy", "", "hashed, geoLatency, static or custom (default: the instance's)")
	f.BoolVar(&c.disabled, "disabled", false, "create it disabled")
	f.BoolVar(&c.edge, "edge", false, "the devices are IoT Edge devices")
	f.StringVar(&c.twin, "initial-twin", "", `initial twin JSON, e.g. '{"tags":{"floor":3}}'`)
}

// common returns the shared fields with attestation att (nil: symmetric key).
func (c *commonFlags) common(att *dpsclient.AttestationMechanism) (dpsclient.EnrollmentCommon, error) {
	ec := dpsclient.EnrollmentCommon{Attestation: att, IoTHubs: c.hubs, AllocationPolicy: c.policy,
		ProvisioningStatus: "enabled"}
	if att == nil {
		ec.Attestation = symmetricKeyAttestation(c.key, c.secondaryKey)
	} else if c.key != "" || c.secondaryKey != "" {
		return ec, errors.New("--key and --secondary-key apply to symmetric-key attestation only")
	}
	if c.disabled {
		ec.ProvisioningStatus = "disabled"
	}
	if c.edge {
		ec.Capabilities = &model.Capabilities{IoTEdge: true}
	}
	if c.twin != "" {
		if err := json.Unmarshal([]byte(c.twin), &ec.InitialTwin); err != nil {
			return ec, fmt.Errorf("--initial-twin: %w", err)
		}
	}
	return ec, nil
}

func symmetricKeyAttestation(primary, secondary string) *dpsclient.AttestationMechanism {
	a := &dpsclient.AttestationMechanism{Type: "symmetricKey"}
	if primary != "" || secondary != "" {
		a.SymmetricKey = &model.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}
	}
	return a
}

func enrollmentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "enrollment", Short: "Manage individual enrollments (service API)"}
	cmd.AddCommand(enrollmentCreateCmd(), enrollmentShowCmd(), enrollmentListCmd(), enrollmentDeleteCmd(),
		enrollmentSetStatusCmd(), computeKeyCmd())
	return cmd
}

// enrollmentRecord is the individual enrollment for the generic verbs.
var enrollmentRecord = &serviceRecord[*dpsclient.IndividualEnrollment]{what: "enrollment",
	get: (*dpsclient.Service).GetEnrollment, put: (*dpsclient.Service).CreateOrUpdateEnrollment,
	del: (*dpsclient.Service).DeleteEnrollment, print: printEnrollment}

func enrollmentCreateCmd() *cobra.Command {
	var certFile, tpmEK, deviceID string
	cmd := enrollmentRecord.createCmd("create REGID [--key K --secondary-key K2 | --certificate PEMFILE | --tpm-ek B64]",
		"Create an individual enrollment (symmetric key unless --certificate or --tpm-ek)",
		func() (*dpsclient.AttestationMechanism, error) { return individualAttestation(certFile, tpmEK) },
		func(id string, ec dpsclient.EnrollmentCommon) *dpsclient.IndividualEnrollment {
			return &dpsclient.IndividualEnrollment{RegistrationID: id, DeviceID: deviceID, EnrollmentCommon: ec}
		})
	f := cmd.Flags()
	f.StringVar(&certFile, "certificate", "", "X.509 attestation with this device certificate (PEM file)")
	f.StringVar(&tpmEK, "tpm-ek", "", "TPM attestation with this endorsement key (base64)")
	f.StringVar(&deviceID, "device-id", "", "IoT Hub device id (default: the registration id)")
	return cmd
}

// individualAttestation returns the X.509 or TPM attestation asked for,
// or nil for a symmetric key.
func individualAttestation(certFile, tpmEK string) (*dpsclient.AttestationMechanism, error) {
	switch {
	case certFile != "" && tpmEK != "":
		return nil, errors.New("--certificate and --tpm-ek are exclusive")
	case certFile != "":
		pem, err := os.ReadFile(certFile)
		if err != nil {
			return nil, err
		}
		a := &dpsclient.AttestationMechanism{Type: "x509"}
		a.X509 = x509WithCertificates(string(pem), false)
		return a, nil
	case tpmEK != "":
		a := &dpsclient.AttestationMechanism{Type: "tpm"}
		a.TPM = &model.TPMAttestation{EndorsementKey: tpmEK}
		return a, nil
	}
	return nil, nil
}

func enrollmentShowCmd() *cobra.Command {
	return enrollmentRecord.showCmd("show REGID", "Show an individual enrollment, keys included")
}

func enrollmentListCmd() *cobra.Command {
	return listCmd("list", "List every individual enrollment", "enrollments per service API page",
		(*dpsclient.Service).QueryEnrollments, table[*dpsclient.IndividualEnrollment]{
			format: "%-40s %-13s %-9s %s\n",
			header: []any{"REGISTRATION ID", "ATTESTATION", "STATUS", "DEVICE ID"},
			row: func(e *dpsclient.IndividualEnrollment) []any {
				return []any{e.RegistrationID, attestationType(e.Attestation), e.ProvisioningStatus, e.DeviceID}
			},
		})
}

func enrollmentDeleteCmd() *cobra.Command {
	return enrollmentRecord.deleteCmd("delete REGID", "Delete an individual enrollment (its registration record stays)",
		"delete only if the enrollment still has this etag")
}

func enrollmentSetStatusCmd() *cobra.Command {
	return enrollmentRecord.setStatusCmd("set-status REGID enabled|disabled", "Enable or disable an individual enrollment",
		func(e *dpsclient.IndividualEnrollment, status string) {
			e.ProvisioningStatus, e.RegistrationState = status, nil
		})
}

func parseStatus(s string) (string, error) {
	switch strings.ToLower(s) {
	case "enabled", "disabled":
		return strings.ToLower(s), nil
	}
	return "", fmt.Errorf("status %q: want enabled or disabled", s)
}

func computeKeyCmd() *cobra.Command {
	var groupKey, regID string
	cmd := &cobra.Command{
		Use:   "compute-key --group-key K --registration-id R",
		Short: "Derive a device key from a symmetric-key group key (local, no request)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if groupKey == "" || regID == "" {
				return errors.New("--group-key and --registration-id are required")
			}
			k, err := sas.DeriveKey(groupKey, regID)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), map[string]string{"registrationId": regID, "key": k}, func(w io.Writer) {
				fmt.Fprintln(w, k)
			})
		},
	}
	cmd.Flags().StringVar(&groupKey, "group-key", "", "the group's symmetric key (base64)")
	cmd.Flags().StringVar(&regID, "registration-id", "", "the device's registration id")
	return cmd
}

// x509WithCertificates returns an x509 attestation with a primary
// certificate: client certificates, or signing certificates for a group.
func x509WithCertificates(pem string, signing bool) *model.X509Attestation {
	certs := &model.X509Certificates{Primary: &model.X509CertificateWithInfo{Certificate: pem}}
	if signing {
		return &model.X509Attestation{SigningCertificates: certs}
	}
	return &model.X509Attestation{ClientCertificates: certs}
}

func attestationType(a *model.AttestationMechanism) string {
	if a == nil {
		return "-"
	}
	return a.Type
}

// field prints one aligned "name value" line, skipping empty values.
func field(w io.Writer, name, value string) {
	if value != "" {
		fmt.Fprintf(w, "%-20s %s\n", name, value)
	}
}

func printEnrollment(w io.Writer, e *dpsclient.IndividualEnrollment) {
	field(w, "registration id", e.RegistrationID)
	field(w, "device id", e.DeviceID)
	printCommon(w, &e.EnrollmentCommon)
	if r := e.RegistrationState; r != nil {
		field(w, "registration", fmt.Sprintf("%s, hub %s, device %s", r.Status, r.AssignedHub, r.DeviceID))
	}
}

func printCommon(w io.Writer, c *dpsclient.EnrollmentCommon) {
	printAttestation(w, c.Attestation)
	field(w, "status", c.ProvisioningStatus)
	policy := c.AllocationPolicy
	if policy == "" {
		policy = "(instance default)"
	}
	field(w, "allocation policy", policy)
	hubs := strings.Join(c.IoTHubs, ", ")
	if hubs == "" {
		hubs = "(all linked hubs)"
	}
	field(w, "iot hubs", hubs)
	if c.Capabilities != nil && c.Capabilities.IoTEdge {
		field(w, "iot edge", "yes")
	}
	field(w, "etag", c.Etag)
	if c.CreatedDateTimeUTC != nil {
		field(w, "created", c.CreatedDateTimeUTC.Format("2006-01-02T15:04:05.000Z"))
	}
	if c.LastUpdatedDateTimeUTC != nil {
		field(w, "updated", c.LastUpdatedDateTimeUTC.Format("2006-01-02T15:04:05.000Z"))
	}
}

func printAttestation(w io.Writer, a *model.AttestationMechanism) {
	field(w, "attestation", attestationType(a))
	if a == nil {
		return
	}
	if k := a.SymmetricKey; k != nil {
		field(w, "primary key", k.PrimaryKey)
		field(w, "secondary key", k.SecondaryKey)
	}
	if a.TPM != nil {
		field(w, "endorsement key", a.TPM.EndorsementKey)
	}
	if x := a.X509; x != nil {
		for _, p := range []struct {
			name  string
			certs *model.X509Certificates
		}{{"client cert", x.ClientCertificates}, {"signing cert", x.SigningCertificates}} {
			if p.certs == nil {
				continue
			}
			for _, c := range []*model.X509CertificateWithInfo{p.certs.Primary, p.certs.Secondary} {
				if c != nil && c.Info != nil {
					field(w, p.name, fmt.Sprintf("%s (SHA-256 %s, until %s)", c.Info.SubjectName, c.Info.SHA256Thumbprint, c.Info.NotAfterUTC))
				}
			}
		}
		if r := x.CAReferences; r != nil {
			field(w, "CA reference", r.Primary)
			field(w, "secondary CA ref", r.Secondary)
		}
	}
}
