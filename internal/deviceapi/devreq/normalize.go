package devreq

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// ErrNoStatus is an engine answer without a status (rendered as 500).
var ErrNoStatus = errors.New("devreq: engine returned no status")

// StatusUnassigned is the status that must never reach a device (§2.4:
// the C SDK reads it as a TPM challenge, Node fails, C# polls forever).
const StatusUnassigned = "unassigned"

// Normalize checks an engine answer against the device-API rules of §2.4
// and returns a copy fit to send plus its Retry-After in seconds (0:
// none). The engine's value is never modified. "unassigned" becomes
// "assigning" (logged as an engine bug); an "assigning" answer always has
// a Retry-After (DefaultRetryAfter when the engine gave none) and a
// registrationState with at least {registrationId, status}, which the IoT
// Edge client needs. Any other unknown status is a 500. regID is the
// authoritative registration id; log may be nil.
func Normalize(res *engine.Result, regID string, log *slog.Logger) (*model.RegistrationOperationStatus, int, error) {
	if res == nil || res.Status == nil {
		return nil, 0, ErrNoStatus
	}
	st := *res.Status
	switch st.Status {
	case model.OpStatusAssigning, model.OpStatusAssigned, model.OpStatusFailed, model.OpStatusDisabled:
	case StatusUnassigned:
		st.Status = DeviceStatus(st.Status, regID, log)
	default:
		return nil, 0, apierr.Wrap(errors.New("devreq: engine returned status "+strconv.Quote(st.Status)),
			apierr.CodeInternal, "Internal error.")
	}
	if rs := st.RegistrationState; rs != nil {
		c := *rs
		c.Status = DeviceStatus(c.Status, regID, log)
		st.RegistrationState = &c
	}
	retry := max(res.RetryAfter, 0)
	if st.Status != model.OpStatusAssigning {
		return &st, retry, nil
	}
	if retry == 0 {
		retry = DefaultRetryAfter
	}
	if st.RegistrationState == nil {
		st.RegistrationState = &model.DeviceRegistrationResult{RegistrationID: regID, Status: model.OpStatusAssigning}
	}
	if st.OperationID == "" && log != nil {
		log.Error("engine answered assigning without an operation id", "registration_id", regID)
	}
	return &st, retry, nil
}

// DeviceStatus maps "unassigned", which must never reach a device, to
// "assigning", logging the engine bug; other statuses pass unchanged.
func DeviceStatus(s, regID string, log *slog.Logger) string {
	if s != StatusUnassigned {
		return s
	}
	if log != nil {
		log.Error("engine returned status unassigned on the device API; sending assigning", "registration_id", regID)
	}
	return model.OpStatusAssigning
}
