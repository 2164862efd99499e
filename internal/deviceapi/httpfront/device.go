package httpfront

import (
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/devreq"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

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
		return devreq.ErrNoStatus
	}
	out := *res
	out.Status = devreq.DeviceStatus(out.Status, rt.regID, h.log)
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
	if err := devreq.CheckBodyRegistrationID(reg, pathID); err != nil {
		return nil, err
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

// normalize is devreq.Normalize (§2.4) for the route's registration id.
func (h *handler) normalize(res *engine.Result, rt route) (*model.RegistrationOperationStatus, int, error) {
	return devreq.Normalize(res, rt.regID, h.log)
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
