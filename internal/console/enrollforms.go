package console

import (
	"bytes"
	"encoding/json"
	"strings"

	"net/http"

	"github.com/opendps/opendps/internal/model"
)

// The create forms of enrollments and groups offer what `opendps
// enrollment create` and `opendps group create` do: the attestation
// (symmetric key; X.509 with an uploaded certificate, or a group's CA
// reference; TPM for an enrollment), and the settings both share: linked
// hubs, allocation policy, initial twin, IoT Edge, created disabled. The
// service (enrollment.Service) validates everything, as for the service
// API.

// Attestation choices of the forms (the "attestation" field).
const (
	attSymmetricKey = "symmetricKey"
	attX509         = "x509"  // enrollment: client certificate; group: signing certificate
	attCARef        = "caRef" // group: verified CA certificates of the instance
	attTPM          = "tpm"
)

// formCommon reads the settings enrollments and groups share, with
// attestation att.
func formCommon(r *http.Request, att *model.AttestationMechanism) (model.EnrollmentCommon, error) {
	ec := model.EnrollmentCommon{Attestation: att, ProvisioningStatus: model.StatusEnabled,
		AllocationPolicy: strings.TrimSpace(r.PostFormValue("allocationPolicy"))}
	if r.PostFormValue("disabled") == "on" {
		ec.ProvisioningStatus = model.StatusDisabled
	}
	if r.PostFormValue("edge") == "on" {
		ec.Capabilities = &model.Capabilities{IoTEdge: true}
	}
	for _, h := range strings.FieldsFunc(r.PostFormValue("iotHubs"), func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' }) {
		ec.IoTHubs = append(ec.IoTHubs, h)
	}
	if twin := strings.TrimSpace(r.PostFormValue("initialTwin")); twin != "" {
		dec := json.NewDecoder(bytes.NewReader([]byte(twin)))
		dec.DisallowUnknownFields()
		var t model.InitialTwin
		if err := dec.Decode(&t); err != nil {
			return ec, badRequest(`The initial twin must be JSON such as {"tags":{"floor":3},"properties":{"desired":{"interval":30}}}: ` + err.Error() + ".")
		}
		ec.InitialTwin = &t
	}
	return ec, nil
}

// formX509 is an x509 attestation with the certificate of the form's
// "cert" field (file or text): client certificates, or signing ones.
func formX509(r *http.Request, signing bool) (*model.AttestationMechanism, error) {
	pem := pemField(r, "cert")
	if pem == "" {
		return nil, badRequest("Upload the certificate (PEM) for X.509 attestation.")
	}
	certs := &model.X509Certificates{Primary: &model.X509CertificateWithInfo{Certificate: pem}}
	if sec := pemField(r, "secondaryCert"); sec != "" {
		certs.Secondary = &model.X509CertificateWithInfo{Certificate: sec}
	}
	x := &model.X509Attestation{ClientCertificates: certs}
	if signing {
		x = &model.X509Attestation{SigningCertificates: certs}
	}
	return &model.AttestationMechanism{Type: model.AttestationX509, X509: x}, nil
}

// individualAttestation is the attestation of the enrollment form.
func individualAttestation(r *http.Request) (*model.AttestationMechanism, error) {
	switch r.PostFormValue("attestation") {
	case "", attSymmetricKey:
		return symKey(r)
	case attX509:
		return formX509(r, false)
	case attTPM:
		ek := strings.TrimSpace(r.PostFormValue("endorsementKey"))
		if ek == "" {
			return nil, badRequest("Give the TPM's endorsement key (base64) for TPM attestation.")
		}
		return &model.AttestationMechanism{Type: model.AttestationTPM, TPM: &model.TPMAttestation{EndorsementKey: ek}}, nil
	}
	return nil, badRequest("Choose symmetric key, X.509 or TPM attestation.")
}

// groupAttestation is the attestation of the group form.
func groupAttestation(r *http.Request) (*model.AttestationMechanism, error) {
	switch r.PostFormValue("attestation") {
	case "", attSymmetricKey:
		return symKey(r)
	case attX509:
		return formX509(r, true)
	case attCARef:
		ref := &model.X509CAReferences{Primary: strings.TrimSpace(r.PostFormValue("caRef")),
			Secondary: strings.TrimSpace(r.PostFormValue("secondaryCaRef"))}
		if ref.Primary == "" {
			return nil, badRequest("Name a verified CA certificate of the instance for CA-reference attestation.")
		}
		return &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{CAReferences: ref}}, nil
	}
	return nil, badRequest("Choose symmetric key, X.509 signing certificate or CA reference attestation.")
}
