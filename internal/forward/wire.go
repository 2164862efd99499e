package forward

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
)

// pathDevice is the path of forwarded device requests; an op follows.
const pathDevice = peer.PathPrefix + "device/"

// Device operations (the last path segment).
const (
	opRegister  = "register"
	opOperation = "operation"
	opStatus    = "status"
	opAuth      = "auth"
)

// maxWire bounds a forwarded request or answer body: a device body is at
// most apierr.MaxBody, plus certificates and the token.
const maxWire = 1 << 20

// wireRequest is an engine.Request on the peer link.
type wireRequest struct {
	IDScope        string `json:"idScope"`
	RegistrationID string `json:"registrationId"`
	SASToken       string `json:"sasToken,omitempty"`
	// Certificates is the client's TLS chain in DER, leaf first (base64 in
	// JSON).
	Certificates [][]byte `json:"certificates,omitempty"`
	// Body is the parsed register body without its payload; Payload holds
	// the payload's bytes exactly as the device sent them.
	Body        *model.DeviceRegistration `json:"body,omitempty"`
	Payload     []byte                    `json:"payload,omitempty"`
	Transport   string                    `json:"transport,omitempty"`
	ClientAddr  string                    `json:"clientAddr,omitempty"`
	OperationID string                    `json:"operationId,omitempty"`
}

// wireResult is the answer of a forwarded request (200); errors are
// answered in the DPS error shape with their status.
type wireResult struct {
	Status       *model.RegistrationOperationStatus `json:"status,omitempty"`
	RetryAfter   int                                `json:"retryAfter,omitempty"`
	Registration *model.DeviceRegistrationResult    `json:"registration,omitempty"`
}

func toWire(req *engine.Request, operationID string) wireRequest {
	w := wireRequest{IDScope: req.IDScope, RegistrationID: req.RegistrationID, SASToken: req.SASToken,
		Transport: req.Transport, ClientAddr: req.ClientAddr, OperationID: operationID}
	for _, c := range req.PeerCertificates {
		w.Certificates = append(w.Certificates, c.Raw)
	}
	if req.Body != nil {
		b := *req.Body
		w.Payload, b.Payload = b.Payload, nil
		w.Body = &b
	}
	return w
}

func (w *wireRequest) request() (*engine.Request, error) {
	req := &engine.Request{IDScope: w.IDScope, RegistrationID: w.RegistrationID, SASToken: w.SASToken,
		Transport: w.Transport, ClientAddr: w.ClientAddr}
	for _, der := range w.Certificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, apierr.New(apierr.CodeBadRequest, "A forwarded client certificate does not parse.")
		}
		req.PeerCertificates = append(req.PeerCertificates, c)
	}
	if w.Body != nil {
		b := *w.Body
		b.Payload = w.Payload
		req.Body = &b
	}
	return req, nil
}

// forward sends req to t.region and decodes the answer into res (nil:
// none expected). An error answer becomes the same *apierr.Error.
func (d *Device) forward(ctx context.Context, t target, op string, req *engine.Request, operationID string, res *wireResult) error {
	body, err := json.Marshal(toWire(req, operationID))
	if err != nil {
		return err
	}
	hdr := http.Header{"Content-Type": []string{"application/json"}}
	resp, err := d.peer.Do(ctx, t.region, http.MethodPost, pathDevice+op, hdr, body)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.log.Warn("forward: peer unreachable", "peer", t.region, "op", op)
		return unavailable("The region serving this ID scope cannot be reached; retry.", nil)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxWire))
	if err != nil {
		d.log.Warn("forward: answer cut short", "peer", t.region, "op", op)
		return unavailable("The region serving this ID scope cannot be reached; retry.", nil)
	}
	d.log.Debug("forwarded", "peer", t.region, "op", op, "status", resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		e := errorOf(resp, raw)
		if e.Status == http.StatusServiceUnavailable && t.path != "" {
			d.loc.forget(t.path) // maybe no longer primary there: ask again
		}
		return e
	}
	if res == nil {
		return nil
	}
	if err := json.Unmarshal(raw, res); err != nil {
		d.log.Warn("forward: bad answer", "peer", t.region, "op", op)
		return unavailable("The region serving this ID scope answered unexpectedly; retry.", nil)
	}
	return nil
}

// errorOf rebuilds the error a peer answered: its status, DPS error code,
// message and Retry-After.
func errorOf(resp *http.Response, raw []byte) *apierr.Error {
	var b apierr.Body
	if err := json.Unmarshal(raw, &b); err != nil || b.ErrorCode == 0 {
		return unavailable("The region serving this ID scope answered unexpectedly; retry.",
			errors.New("forward: peer answered "+resp.Status))
	}
	e := &apierr.Error{Status: resp.StatusCode, Code: b.ErrorCode, Message: b.Message, Forwarded: true}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.Header = http.Header{"Retry-After": []string{ra}}
	}
	return e
}

// serveDevice answers a forwarded device request with the local engine,
// never forwarding it again.
func (d *Device) serveDevice(w http.ResponseWriter, r *http.Request) error {
	op := r.PathValue("op")
	if op != opRegister && op != opOperation && op != opStatus && op != opAuth {
		return apierr.New(apierr.CodeNotFound, "No device operation %q.", op)
	}
	var wr wireRequest
	if err := apierr.DecodeJSON(r, maxWire, &wr, true); err != nil {
		return err
	}
	dir, err := d.dirs.byScope(r.Context(), wr.IDScope)
	if err != nil {
		return unavailable("The service is temporarily unavailable; retry.", err)
	}
	if dir != nil && !servesHere(dir) {
		return unavailable("This region is not the primary of this ID scope; retry.", nil)
	}
	req, err := wr.request()
	if err != nil {
		return err
	}
	ctx := r.Context()
	var res wireResult
	switch op {
	case opAuth:
		if err := d.local.Authenticate(ctx, req); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	case opRegister:
		out, err := d.local.Register(ctx, req)
		if err != nil {
			return err
		}
		res.Status, res.RetryAfter = out.Status, out.RetryAfter
	case opOperation:
		out, err := d.local.OperationStatus(ctx, req, wr.OperationID)
		if err != nil {
			return err
		}
		res.Status, res.RetryAfter = out.Status, out.RetryAfter
	case opStatus:
		if res.Registration, err = d.local.RegistrationStatus(ctx, req); err != nil {
			return err
		}
	}
	return apierr.JSON(w, http.StatusOK, res)
}

// peerOnly refuses requests without a verified region certificate.
func peerOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if peer.RegionOf(r) == "" {
			apierr.Write(w, r, nil, apierr.New(apierr.CodeForbidden, "Only peer regions may call this endpoint."))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveLocate answers whether this region holds the ID scope as primary
// or fenced.
func (d *Device) serveLocate(w http.ResponseWriter, r *http.Request) error {
	dir, err := d.dirs.byScope(r.Context(), r.PathValue("scope"))
	return answerLocate(w, d.peer.Region(), dir, err)
}

func answerLocate(w http.ResponseWriter, region string, d *model.DirEntry, err error) error {
	if err != nil {
		return unavailable("The service is temporarily unavailable; retry.", nil)
	}
	if d == nil || !(servesHere(d) || d.Role == model.RoleFenced) {
		return apierr.New(apierr.CodeInstanceNotFound, "Not primary in this region.")
	}
	role := d.Role
	if role == "" {
		role = model.RolePrimary
	}
	return apierr.JSON(w, http.StatusOK, Location{Region: region, Instance: d.Name, Epoch: d.Epoch, Role: role, DREnabled: d.DREnabled})
}

// Mount adds the receiving side of device forwarding to the peer
// listener's mux: locate, locate-instance and device/{op}. Every handler
// requires a verified region certificate. The locate handlers log nothing:
// every region is asked, and the path names a scope or an instance that
// may belong to a residency instance of another region.
func (d *Device) Mount(mux *http.ServeMux) {
	mux.Handle("GET "+pathLocate+"{scope}", peerOnly(apierr.Handler(nil, d.serveLocate)))
	mux.Handle("GET "+pathLocateInstance+"{name}", peerOnly(apierr.Handler(nil, func(w http.ResponseWriter, r *http.Request) error {
		dir, err := d.dirs.byName(r.Context(), r.PathValue("name"))
		return answerLocate(w, d.peer.Region(), dir, err)
	})))
	mux.Handle("POST "+pathDevice+"{op}", peerOnly(apierr.Handler(d.log, d.serveDevice)))
}
