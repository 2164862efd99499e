package engine

import (
	"crypto/x509"
	"encoding/base64"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// timestamp formats t as DPS does: 7 fractional digits and Z.
func timestamp(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func tsPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return timestamp(*t)
}

// deviceEtag is the device API form of a record etag: base64 of the quoted
// etag, as DPS shows it.
func deviceEtag(etag string) string {
	if etag == "" {
		return ""
	}
	if !strings.HasPrefix(etag, `"`) {
		etag = `"` + etag + `"`
	}
	return base64.StdEncoding.EncodeToString([]byte(etag))
}

// resultOf is the device view of a registration record.
func resultOf(r *model.Registration) *model.DeviceRegistrationResult {
	res := &model.DeviceRegistrationResult{
		RegistrationID: r.RegistrationID, CreatedDateTimeUTC: tsPtr(r.CreatedDateTimeUTC),
		AssignedHub: r.AssignedHub, DeviceID: r.DeviceID, Status: r.Status, Substatus: r.Substatus,
		ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
		LastUpdatedDateTimeUTC: tsPtr(r.LastUpdatedDateTimeUTC), Etag: deviceEtag(r.Etag), Payload: r.Payload,
	}
	switch r.AttestationType {
	case model.AttestationSymmetricKey:
		res.SymmetricKey = &model.SymmetricKeyResult{EnrollmentGroupID: r.EnrollmentGroupID}
	case model.AttestationX509:
		res.X509 = r.X509
		if res.X509 == nil {
			res.X509 = &model.X509Result{}
		}
	}
	if res.Status == model.OpStatusFailed {
		res.AssignedHub, res.DeviceID, res.Substatus = "", "", ""
	}
	return res
}

// statusOf is the operation status of a finished registration.
func statusOf(r *model.Registration) *model.RegistrationOperationStatus {
	return &model.RegistrationOperationStatus{OperationID: r.OperationID, Status: r.Status, RegistrationState: resultOf(r)}
}

// statusFor is the status of record r as the answer to operation opID,
// which r may not name: another registration of the same device that
// finished later decided the device's outcome.
func statusFor(r *model.Registration, opID string) *model.RegistrationOperationStatus {
	st := statusOf(r)
	st.OperationID = opID
	return st
}

func failedStatus(opID, regID string, code int, msg string) *model.RegistrationOperationStatus {
	return &model.RegistrationOperationStatus{OperationID: opID, Status: model.OpStatusFailed,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: regID, Status: model.OpStatusFailed,
			ErrorCode: code, ErrorMessage: msg, LastUpdatedDateTimeUTC: timestamp(time.Now())}}
}

func certInfo(c *x509.Certificate) model.X509CertificateInfo {
	i := pki.InfoOf(c)
	return model.X509CertificateInfo{SubjectName: i.SubjectName, SHA1Thumbprint: i.SHA1Thumbprint,
		SHA256Thumbprint: i.SHA256Thumbprint, IssuerName: i.IssuerName, NotBeforeUTC: i.NotBeforeUTC,
		NotAfterUTC: i.NotAfterUTC, SerialNumber: i.SerialNumber, Version: i.Version}
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }
