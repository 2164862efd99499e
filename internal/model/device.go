package model

import "encoding/json"

// Device API operation statuses (spec §2.4). "unassigned" is never sent on
// the device API.
const (
	OpStatusAssigning = "assigning"
	OpStatusAssigned  = "assigned"
	OpStatusFailed    = "failed"
	OpStatusDisabled  = "disabled"
)

// Registration substatus values (spec §7.6).
const (
	SubstatusInitialAssignment                = "initialAssignment"
	SubstatusDeviceDataMigrated               = "deviceDataMigrated"
	SubstatusDeviceDataReset                  = "deviceDataReset"
	SubstatusReprovisionedToInitialAssignment = "reprovisionedToInitialAssignment"
)

// DeviceRegistration is the body of a register call (spec §2.3).
type DeviceRegistration struct {
	RegistrationID string          `json:"registrationId,omitempty"`
	TPM            *TPMAttestation `json:"tpm,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// RegistrationOperationStatus is the answer of register and operation
// polls (spec §2.4).
type RegistrationOperationStatus struct {
	OperationID       string                    `json:"operationId"`
	Status            string                    `json:"status"`
	RegistrationState *DeviceRegistrationResult `json:"registrationState,omitempty"`
}

// DeviceRegistrationResult is the device's view of its registration.
type DeviceRegistrationResult struct {
	RegistrationID         string              `json:"registrationId"`
	CreatedDateTimeUTC     string              `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string              `json:"assignedHub,omitempty"`
	DeviceID               string              `json:"deviceId,omitempty"`
	Status                 string              `json:"status"`
	Substatus              string              `json:"substatus,omitempty"`
	ErrorCode              int                 `json:"errorCode,omitempty"`
	ErrorMessage           string              `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC string              `json:"lastUpdatedDateTimeUtc,omitempty"`
	Etag                   string              `json:"etag,omitempty"`
	Payload                json.RawMessage     `json:"payload,omitempty"`
	SymmetricKey           *SymmetricKeyResult `json:"symmetricKey,omitempty"`
	X509                   *X509Result         `json:"x509,omitempty"`
	TPM                    *TPMResult          `json:"tpm,omitempty"`
}

// SymmetricKeyResult names the group of a symmetric-key device.
type SymmetricKeyResult struct {
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// X509Result describes the certificate an X.509 device registered with.
type X509Result struct {
	CertificateInfo        *X509CertificateInfo `json:"certificateInfo,omitempty"`
	EnrollmentGroupID      string               `json:"enrollmentGroupId,omitempty"`
	SigningCertificateInfo *X509CertificateInfo `json:"signingCertificateInfo,omitempty"`
}

// TPMResult carries the TPM authentication key.
type TPMResult struct {
	AuthenticationKey string `json:"authenticationKey"`
}
