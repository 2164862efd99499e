package httpfront

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// errNoStatus is an engine answer without a status (rendered as 500).
var errNoStatus = errors.New("httpfront: engine returned no status")

// register serves PUT .../register: always 202 on success (§2.4).
func (h *handler) register(w http.ResponseWriter, r *http.Request, rt route) error {
	body, err := h.decodeBody(r, rt.regID)
	if err != nil {
		return err
	}
	res, err := h.engine.Register(r.Context(), h.request(r, rt, body))
	if err != nil {
		return err
	}
	st, retry, err := h.normalize(res, rt)
	if err != nil {
		return err
	}
	setRetryAfter(w, retry)
	if loc := location(r, rt); loc != "" {
		w.Header().Set(headerLocation, loc)
	}
	return apierr.JSON(w, http.StatusAccepted, st)
}

// operationStatus serves GET .../operations/{id}: 202 while assigning, 200
// when terminal. A body (the Node SDK sends "{}") is ignored.
func (h *handler) operationStatus(w http.ResponseWriter, r *http.Request, rt route) error {
	if err := validateOperationID(rt.opID); err != nil {
		return err
	}
	res, err := h.engine.OperationStatus(r.Context(), h.request(r, rt, nil), rt.opID)
	if err != nil {
		return err
	}
	st, retry, err := h.normalize(res, rt)
	if err != nil {
		return err
	}
	setRetryAfter(w, retry)
	code := http.StatusOK
	if st.Status == model.OpStatusAssigning {
		code = http.StatusAccepted
	}
	return apierr.JSON(w, code, st)
}

// registrationStatus serves POST /{scope}/registrations/{id}: 200 with the
// bare DeviceRegistrationResult (§2.5).
func (h *handler) registrationStatus(w http.ResponseWriter, r *http.Request, rt route) error {
	body, err := h.decodeBody(r, rt.regID)
	if err != nil {
		return err
	}
	res, err := h.engine.RegistrationStatus(r.Context(), h.request(r, rt, body))
	if err != nil {
		return err
	}
	if res == nil {
		return errNoStatus
	}
	out := *res
	out.Status = h.deviceStatus(out.Status, rt)
	return apierr.JSON(w, http.StatusOK, &out)
}

// decodeBody parses a DeviceRegistration body (§2.3). An empty body or
// "null" gives nil; unknown fields are ignored; a registrationId other
// than the path's (ignoring case) is 400. Size, content type and syntax
// errors are apierr.DecodeJSON's (413, 415, 400); a missing Content-Type
// is accepted and Content-Encoding is ignored (the docs' curl examples
// send "Content-Encoding: utf-8").
func (h *handler) decodeBody(r *http.Request, pathID string) (*model.DeviceRegistration, error) {
	var reg *model.DeviceRegistration
	if err := apierr.DecodeJSON(r, h.maxBody, &reg, false); err != nil {
		return nil, err
	}
	if reg != nil && reg.RegistrationID != "" && !strings.EqualFold(reg.RegistrationID, pathID) {
		return nil, apierr.New(apierr.CodeBadArgument,
			"Body registrationId %q does not match the registration id %q of the path.", clip(reg.RegistrationID), pathID)
	}
	return reg, nil
}

// request builds the engine request: ids from the path, the Authorization
// header verbatim, the TLS client chain (nil when the client sent none),
// and the TCP peer address.
func (h *handler) request(r *http.Request, rt route, body *model.DeviceRegistration) *engine.Request {
	req := &engine.Request{
		IDScope:        rt.scope,
		RegistrationID: rt.regID,
		SASToken:       r.Header.Get(headerAuthorization),
		Body:           body,
		Transport:      transportHTTPS,
		ClientAddr:     clientIP(r.RemoteAddr),
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.PeerCertificates = r.TLS.PeerCertificates
	}
	return req
}

// normalize checks an engine answer against the device-API rules of §2.4
// and returns a copy fit to send plus its Retry-After (0: none). The
// engine's value is never modified.
func (h *handler) normalize(res *engine.Result, rt route) (*model.RegistrationOperationStatus, int, error) {
	if res == nil || res.Status == nil {
		return nil, 0, errNoStatus
	}
	st := *res.Status
	switch st.Status {
	case model.OpStatusAssigning, model.OpStatusAssigned, model.OpStatusFailed, model.OpStatusDisabled:
	case statusUnassigned:
		st.Status = h.deviceStatus(st.Status, rt)
	default:
		return nil, 0, apierr.Wrap(errors.New("httpfront: engine returned status "+strconv.Quote(st.Status)),
			apierr.CodeInternal, "Internal error.")
	}
	if rs := st.RegistrationState; rs != nil {
		c := *rs
		c.Status = h.deviceStatus(c.Status, rt)
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
		st.RegistrationState = &model.DeviceRegistrationResult{RegistrationID: rt.regID, Status: model.OpStatusAssigning}
	}
	if st.OperationID == "" {
		h.log.Error("engine answered assigning without an operation id", "registration_id", rt.regID)
	}
	return &st, retry, nil
}

// deviceStatus maps "unassigned", which must never reach a device
// (§2.4: the C SDK reads it as a TPM challenge, C# polls forever), to
// "assigning", logging the engine bug.
func (h *handler) deviceStatus(s string, rt route) string {
	if s != statusUnassigned {
		return s
	}
	h.log.Error("engine returned status unassigned on the device API; sending assigning",
		"registration_id", rt.regID, "route", rt.kind.String())
	return model.OpStatusAssigning
}

func setRetryAfter(w http.ResponseWriter, seconds int) {
	if seconds > 0 {
		w.Header().Set(headerRetryAfter, strconv.Itoa(seconds))
	}
}

// location is the Location real DPS sends with 202 on register (§2.4):
// the register URL on the host the device called, without query.
func location(r *http.Request, rt route) string {
	if r.Host == "" {
		return ""
	}
	u := url.URL{Scheme: schemeHTTPS, Host: r.Host,
		Path: "/" + rt.scope + "/" + segRegistrations + "/" + rt.regID + "/" + segRegister}
	return u.String()
}

// clientIP is the host part of a RemoteAddr, or RemoteAddr itself.
func clientIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
