// Package model holds the records opendps stores and serves, in the JSON
// shapes of the DPS service API (spec/dps-protocol.md §6.3, api-version
// 2021-10-01) and of the ARM provisioningServices resource (§8.3).
//
// Records are plain data: no methods here touch storage or the network.
package model

import (
	"encoding/json"
	"time"
)

// Wire values of the service API.
const (
	AttestationSymmetricKey = "symmetricKey"
	AttestationX509         = "x509"
	AttestationTPM          = "tpm"
	AttestationNone         = "none"

	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"

	AllocationHashed     = "hashed"
	AllocationGeoLatency = "geoLatency"
	AllocationStatic     = "static"
	AllocationCustom     = "custom"
)

// SymmetricKeyAttestation holds base64 keys.
type SymmetricKeyAttestation struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// TPMAttestation holds a TPM's public keys (base64).
type TPMAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey,omitempty"`
}

// X509CertificateInfo summarises an uploaded certificate (server-filled).
type X509CertificateInfo struct {
	SubjectName      string `json:"subjectName"`
	SHA1Thumbprint   string `json:"sha1Thumbprint"`
	SHA256Thumbprint string `json:"sha256Thumbprint"`
	IssuerName       string `json:"issuerName"`
	NotBeforeUTC     string `json:"notBeforeUtc"`
	NotAfterUTC      string `json:"notAfterUtc"`
	SerialNumber     string `json:"serialNumber"`
	Version          int    `json:"version"`
}

// X509CertificateWithInfo is a certificate as uploaded (PEM or base64 DER)
// with the summary the service adds.
type X509CertificateWithInfo struct {
	Certificate string               `json:"certificate,omitempty"`
	Info        *X509CertificateInfo `json:"info,omitempty"`
}

// X509Certificates is a primary/secondary pair.
type X509Certificates struct {
	Primary   *X509CertificateWithInfo `json:"primary,omitempty"`
	Secondary *X509CertificateWithInfo `json:"secondary,omitempty"`
}

// X509CAReferences names verified CA certificates of the instance.
type X509CAReferences struct {
	Primary   string `json:"primary,omitempty"`
	Secondary string `json:"secondary,omitempty"`
}

// X509Attestation is the x509 attestation of an enrollment (client
// certificates) or a group (signing certificates or CA references).
type X509Attestation struct {
	ClientCertificates  *X509Certificates `json:"clientCertificates,omitempty"`
	SigningCertificates *X509Certificates `json:"signingCertificates,omitempty"`
	CAReferences        *X509CAReferences `json:"caReferences,omitempty"`
}

// AttestationMechanism is the attestation of an enrollment or group.
type AttestationMechanism struct {
	Type         string                   `json:"type"`
	TPM          *TPMAttestation          `json:"tpm,omitempty"`
	X509         *X509Attestation         `json:"x509,omitempty"`
	SymmetricKey *SymmetricKeyAttestation `json:"symmetricKey,omitempty"`
}

// Capabilities of the device in its hub.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// ReprovisionPolicy says what happens when a registered device registers
// again after its enrollment changed (§7.6).
type ReprovisionPolicy struct {
	UpdateHubAssignment bool `json:"updateHubAssignment"`
	MigrateDeviceData   bool `json:"migrateDeviceData"`
}

// CustomAllocationDefinition names the webhook of custom allocation.
type CustomAllocationDefinition struct {
	WebhookURL string `json:"webhookUrl"`
	APIVersion string `json:"apiVersion"`
}

// InitialTwin is the twin a device starts with in its hub. Collections are
// kept as raw JSON so that what the tenant wrote is what the hub receives.
type InitialTwin struct {
	Tags       json.RawMessage        `json:"tags,omitempty"`
	Properties *InitialTwinProperties `json:"properties,omitempty"`
}

// InitialTwinProperties holds the desired properties.
type InitialTwinProperties struct {
	Desired json.RawMessage `json:"desired,omitempty"`
}

// EnrollmentCommon holds what individual enrollments and groups share.
type EnrollmentCommon struct {
	Attestation                *AttestationMechanism       `json:"attestation"`
	Capabilities               *Capabilities               `json:"capabilities,omitempty"`
	IoTHubHostName             string                      `json:"iotHubHostName,omitempty"`
	InitialTwin                *InitialTwin                `json:"initialTwin,omitempty"`
	Etag                       string                      `json:"etag,omitempty"`
	ProvisioningStatus         string                      `json:"provisioningStatus,omitempty"`
	ReprovisionPolicy          *ReprovisionPolicy          `json:"reprovisionPolicy,omitempty"`
	CreatedDateTimeUTC         *time.Time                  `json:"createdDateTimeUtc,omitempty"`
	LastUpdatedDateTimeUTC     *time.Time                  `json:"lastUpdatedDateTimeUtc,omitempty"`
	AllocationPolicy           string                      `json:"allocationPolicy,omitempty"`
	IoTHubs                    []string                    `json:"iotHubs,omitempty"`
	CustomAllocationDefinition *CustomAllocationDefinition `json:"customAllocationDefinition,omitempty"`
}

// IndividualEnrollment is one device's enrollment.
type IndividualEnrollment struct {
	RegistrationID            string                   `json:"registrationId"`
	DeviceID                  string                   `json:"deviceId,omitempty"`
	RegistrationState         *DeviceRegistrationState `json:"registrationState,omitempty"`
	OptionalDeviceInformation json.RawMessage          `json:"optionalDeviceInformation,omitempty"`
	EnrollmentCommon
}

// EnrollmentGroup is the enrollment of many devices sharing a group key or
// a signing certificate.
type EnrollmentGroup struct {
	EnrollmentGroupID string `json:"enrollmentGroupId"`
	EnrollmentCommon
}

// Enrollment is what individual enrollments and groups have in common, for
// code that works on either.
type Enrollment interface {
	Common() *EnrollmentCommon
	ID() string
}

// Common returns the shared fields.
func (e *IndividualEnrollment) Common() *EnrollmentCommon { return &e.EnrollmentCommon }

// ID returns the registration id.
func (e *IndividualEnrollment) ID() string { return e.RegistrationID }

// Common returns the shared fields.
func (g *EnrollmentGroup) Common() *EnrollmentCommon { return &g.EnrollmentCommon }

// ID returns the group id.
func (g *EnrollmentGroup) ID() string { return g.EnrollmentGroupID }

// DeviceRegistrationState is the service view of a device's registration.
type DeviceRegistrationState struct {
	RegistrationID         string          `json:"registrationId"`
	CreatedDateTimeUTC     *time.Time      `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string          `json:"assignedHub,omitempty"`
	DeviceID               string          `json:"deviceId,omitempty"`
	Status                 string          `json:"status"`
	Substatus              string          `json:"substatus,omitempty"`
	ErrorCode              int             `json:"errorCode,omitempty"`
	ErrorMessage           string          `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC *time.Time      `json:"lastUpdatedDateTimeUtc,omitempty"`
	Etag                   string          `json:"etag,omitempty"`
	Payload                json.RawMessage `json:"payload,omitempty"`
}

// Registration is the stored registration record: the service view plus
// what the engine needs to decide on the next registration. Only the
// embedded DeviceRegistrationState is ever shown to clients.
type Registration struct {
	DeviceRegistrationState
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"` // empty for individual enrollments
	OperationID       string `json:"operationId,omitempty"`
	AttestationType   string `json:"attestationType,omitempty"`
	// Hub and HubDeviceID say where the device identity exists, also while
	// the status is failed (AssignedHub is then empty).
	Hub         string `json:"hub,omitempty"`
	HubDeviceID string `json:"hubDeviceId,omitempty"`
	// InitialHub is the hub of the first assignment.
	InitialHub string `json:"initialHub,omitempty"`
	// Fingerprint summarises what was written to the hub (authentication,
	// capabilities, twin source), so a repeat with nothing changed skips
	// the hub.
	Fingerprint string `json:"fingerprint,omitempty"`
	// X509 keeps the certificate details returned to X.509 devices.
	X509 *X509Result `json:"x509,omitempty"`
}

// BulkEnrollmentOperation is the body of POST /enrollments.
type BulkEnrollmentOperation struct {
	Mode        string                  `json:"mode"`
	Enrollments []*IndividualEnrollment `json:"enrollments"`
}

// BulkEnrollmentGroupOperation is the body of POST /enrollmentGroups.
type BulkEnrollmentGroupOperation struct {
	Mode             string             `json:"mode"`
	EnrollmentGroups []*EnrollmentGroup `json:"enrollmentGroups"`
}

// BulkOperationError is one failed item of a bulk operation.
type BulkOperationError struct {
	RegistrationID    string `json:"registrationId,omitempty"`
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
	ErrorCode         int    `json:"errorCode"`
	ErrorStatus       string `json:"errorStatus"`
}

// BulkOperationResult is the answer of a bulk operation.
type BulkOperationResult struct {
	IsSuccessful bool                 `json:"isSuccessful"`
	Errors       []BulkOperationError `json:"errors"`
}

// QuerySpecification is the body of a query.
type QuerySpecification struct {
	Query string `json:"query"`
}
