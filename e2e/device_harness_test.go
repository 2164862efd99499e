package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// harness is the Go side of test/node/lib/harness.js: POST /{action} with
// a JSON body acts on the deployment or checks its state. Checks answer
// 422 {"error": "..."} listing every mismatch, which fails the node test
// case that asked.
type harness struct {
	e    *deployment
	wh   *webhook
	hubs map[string]*hub.Client // registry clients by linked hub name
}

type harnessAction func(ctx context.Context, raw json.RawMessage) (any, error)

// startHarness serves the actions on 127.0.0.1 and returns the base URL.
func startHarness(t *testing.T, e *deployment, wh *webhook) string {
	t.Helper()
	h := &harness{e: e, wh: wh, hubs: map[string]*hub.Client{}}
	for _, hi := range e.conn.Hubs {
		c, err := hub.New(hi.ConnectionString, hub.WithTLSConfig(e.d.Nodes[0].HubTLS()))
		if err != nil {
			t.Fatal(err)
		}
		h.hubs[hi.HostName] = c
	}
	actions := map[string]harnessAction{
		"expect":             action(h.expect),
		"expectWebhook":      action(h.expectWebhook),
		"moveEnrollment":     action(h.moveEnrollment),
		"setTwin":            action(h.setTwin),
		"deleteRegistration": action(h.deleteRegistration),
		"setHubDown":         action(h.setHubDown),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{action}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := actions[r.PathValue("action")]
		if !ok {
			writeHarness(w, http.StatusNotFound, map[string]string{"error": "no action " + r.PathValue("action")})
			return
		}
		var raw json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			writeHarness(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		res, err := a(r.Context(), raw)
		if err != nil {
			writeHarness(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
			return
		}
		writeHarness(w, http.StatusOK, res)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// action adapts a typed action; unknown fields are refused so that a typo
// in the script fails loudly.
func action[T any](f func(context.Context, T) (any, error)) harnessAction {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var args T
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&args); err != nil {
			return nil, fmt.Errorf("arguments: %w", err)
		}
		return f(ctx, args)
	}
}

func writeHarness(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// expectation describes where a device must be and what its registration
// record must say.
type expectation struct {
	RegID    string `json:"regId"`
	DeviceID string `json:"deviceId"` // default RegID
	// Hub is the one hub holding the identity; "" means none holds it.
	// Every other linked hub must not have it.
	Hub       string              `json:"hub"`
	Auth      *hub.Authentication `json:"auth"`      // compared when set
	Tags      map[string]any      `json:"tags"`      // each must equal the twin's
	Desired   map[string]any      `json:"desired"`   // each must equal the twin's
	NoTags    []string            `json:"noTags"`    // must be absent from the twin
	NoDesired []string            `json:"noDesired"` // must be absent from the twin
	Record    *recordExpectation  `json:"record"`    // checked when set
	NoRecord  bool                `json:"noRecord"`  // no registration record may exist
}

type recordExpectation struct {
	Status    string `json:"status"`
	Substatus string `json:"substatus"`
	ErrorCode int    `json:"errorCode"`
}

// expect checks the hub simulator and the registration record, and
// returns the identity's generationId and etag (to compare across calls).
func (h *harness) expect(ctx context.Context, x expectation) (any, error) {
	if x.DeviceID == "" {
		x.DeviceID = x.RegID
	}
	dev, err := h.checkPlacement(x)
	errs := []error{err}
	if x.Hub != "" {
		errs = append(errs, checkAuth(x.Auth, dev.Auth), h.checkTwin(x))
	}
	errs = append(errs, h.checkRecord(ctx, x))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", x.RegID, err)
	}
	return map[string]string{"generationId": dev.GenerationID, "etag": dev.ETag}, nil
}

// checkPlacement: the identity exists on x.Hub and on no other hub.
func (h *harness) checkPlacement(x expectation) (hub.Device, error) {
	var found hub.Device
	var errs []error
	for _, name := range h.e.hubNames() {
		d, ok := h.e.d.Hubs.Sim().Device(name, x.DeviceID)
		switch want := strings.EqualFold(name, x.Hub); {
		case want && !ok:
			errs = append(errs, fmt.Errorf("device %s is not on hub %s", x.DeviceID, name))
		case !want && ok:
			errs = append(errs, fmt.Errorf("device %s is on hub %s, want it only on %q", x.DeviceID, name, x.Hub))
		case want:
			found = d
		}
	}
	return found, errors.Join(errs...)
}

func checkAuth(want, got *hub.Authentication) error {
	switch {
	case want == nil:
		return nil
	case got == nil:
		return errors.New("identity has no authentication")
	case got.Type != want.Type:
		return fmt.Errorf("authentication type = %q, want %q", got.Type, want.Type)
	}
	if w := want.SymmetricKey; w != nil && (got.SymmetricKey == nil || *got.SymmetricKey != *w) {
		return fmt.Errorf("symmetric keys = %+v, want %+v", got.SymmetricKey, w)
	}
	if w := want.X509Thumbprint; w != nil {
		g := got.X509Thumbprint
		if g == nil || !strings.EqualFold(g.PrimaryThumbprint, w.PrimaryThumbprint) || !strings.EqualFold(g.SecondaryThumbprint, w.SecondaryThumbprint) {
			return fmt.Errorf("thumbprints = %+v, want %+v", g, w)
		}
	}
	return nil
}

// checkTwin compares the listed tags and desired properties.
func (h *harness) checkTwin(x expectation) error {
	if len(x.Tags)+len(x.Desired)+len(x.NoTags)+len(x.NoDesired) == 0 {
		return nil
	}
	tw, ok := h.e.d.Hubs.Sim().Twin(x.Hub, x.DeviceID)
	if !ok {
		return fmt.Errorf("no twin for %s on %s", x.DeviceID, x.Hub)
	}
	var errs []error
	compare := func(what string, got map[string]any, want map[string]any, absent []string) {
		for k, v := range want {
			if g, ok := got[k]; !ok || !equalJSONValues(g, v) {
				errs = append(errs, fmt.Errorf("twin %s %q = %v, want %v", what, k, got[k], v))
			}
		}
		for _, k := range absent {
			if g, ok := got[k]; ok {
				errs = append(errs, fmt.Errorf("twin %s %q = %v, want it absent", what, k, g))
			}
		}
	}
	compare("tag", tw.Tags, x.Tags, x.NoTags)
	compare("desired property", tw.Properties.Desired, x.Desired, x.NoDesired)
	return errors.Join(errs...)
}

// checkRecord reads the registration record through the service API.
func (h *harness) checkRecord(ctx context.Context, x expectation) error {
	if x.Record == nil && !x.NoRecord {
		return nil
	}
	r, err := h.e.svc.GetRegistration(ctx, x.RegID)
	switch {
	case x.NoRecord && errors.Is(err, dpsclient.ErrServiceNotFound):
		return nil
	case x.NoRecord && err == nil:
		return fmt.Errorf("a registration record exists (status %s), want none", r.Status)
	case err != nil:
		return fmt.Errorf("registration record: %w", err)
	}
	w := x.Record
	var errs []error
	if r.Status != w.Status || r.Substatus != w.Substatus || r.ErrorCode != w.ErrorCode {
		errs = append(errs, fmt.Errorf("record status/substatus/errorCode = %s/%s/%d, want %s/%s/%d",
			r.Status, r.Substatus, r.ErrorCode, w.Status, w.Substatus, w.ErrorCode))
	}
	if w.Status == "assigned" && (!strings.EqualFold(r.AssignedHub, x.Hub) || r.DeviceID != x.DeviceID) {
		errs = append(errs, fmt.Errorf("record assignedHub/deviceId = %s/%s, want %s/%s", r.AssignedHub, r.DeviceID, x.Hub, x.DeviceID))
	}
	return errors.Join(errs...)
}

func (h *harness) expectWebhook(_ context.Context, x webhookExpectation) (any, error) {
	n, err := h.wh.check(x, h.e.hubNames())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", x.RegID, err)
	}
	return map[string]int{"calls": n}, nil
}

type moveArgs struct {
	RegID   string   `json:"regId"`
	IoTHubs []string `json:"iotHubs"`
}

// moveEnrollment sets an individual enrollment's iotHubs (with its etag).
func (h *harness) moveEnrollment(ctx context.Context, a moveArgs) (any, error) {
	en, err := h.e.svc.GetEnrollment(ctx, a.RegID)
	if err != nil {
		return nil, err
	}
	en.IoTHubs = a.IoTHubs
	if _, err := h.e.svc.CreateOrUpdateEnrollment(ctx, en); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

type twinArgs struct {
	Hub      string         `json:"hub"`
	DeviceID string         `json:"deviceId"`
	Tags     map[string]any `json:"tags"`
	Desired  map[string]any `json:"desired"`
}

// setTwin patches a twin through the hub's registry API, as a back end
// application would.
func (h *harness) setTwin(ctx context.Context, a twinArgs) (any, error) {
	c, ok := h.hubs[a.Hub]
	if !ok {
		return nil, fmt.Errorf("no linked hub %s", a.Hub)
	}
	_, err := c.UpdateTwin(ctx, a.DeviceID, hub.Twin{Tags: a.Tags, Properties: hub.TwinProperties{Desired: a.Desired}})
	return struct{}{}, err
}

type regArgs struct {
	RegID string `json:"regId"`
}

func (h *harness) deleteRegistration(ctx context.Context, a regArgs) (any, error) {
	return struct{}{}, h.e.svc.DeleteRegistration(ctx, a.RegID, "")
}

type downArgs struct {
	Hub  string `json:"hub"`
	Down bool   `json:"down"`
}

func (h *harness) setHubDown(_ context.Context, a downArgs) (any, error) {
	return struct{}{}, h.e.d.Hubs.Sim().SetDown(a.Hub, a.Down)
}

// hubNames returns the linked hub names (host:port), hub1 first.
func (e *deployment) hubNames() []string {
	out := make([]string, len(e.conn.Hubs))
	for i, h := range e.conn.Hubs {
		out[i] = h.HostName
	}
	return out
}
