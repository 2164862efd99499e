package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhookSlowDelay makes "custom-slow" registrations outlast the engine's
// 200 ms fast-path budget, so the device is answered "assigning".
const webhookSlowDelay = 500 * time.Millisecond

// webhook is a custom allocation webhook (spec/dps-protocol.md §7.4) on
// plain HTTP on 127.0.0.1. It records every request and answers by the
// registration id: "custom-fail..." gets 500, "custom-slow..." waits
// webhookSlowDelay; every other device goes to the hub named hub2... with
// an initial twin and a payload echoing the device's.
type webhook struct {
	srv    *httptest.Server
	secret string // the function key, in the URL's code parameter

	mu    sync.Mutex
	calls map[string][]webhookCall // by registration id; guarded by mu
}

type webhookCall struct {
	query       url.Values
	contentType string
	body        allocationRequest
}

// allocationRequest is the body DPS posts, decoded loosely: the test
// checks the wire shape, not opendps's own types.
type allocationRequest struct {
	IndividualEnrollment map[string]any `json:"individualEnrollment"`
	EnrollmentGroup      map[string]any `json:"enrollmentGroup"`
	DeviceRuntimeContext struct {
		RegistrationID string          `json:"registrationId"`
		SymmetricKey   map[string]any  `json:"symmetricKey"`
		Payload        json.RawMessage `json:"payload"`
	} `json:"deviceRuntimeContext"`
	LinkedHubs []string `json:"linkedHubs"`
}

func startWebhook(t *testing.T, secret string) *webhook {
	w := &webhook{secret: secret, calls: map[string][]webhookCall{}}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

// URL is the webhookUrl to put in enrollments.
func (w *webhook) URL() string { return w.srv.URL + "/api/allocate?code=" + url.QueryEscape(w.secret) }

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req allocationRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		http.Error(rw, "bad request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := req.DeviceRuntimeContext.RegistrationID
	w.mu.Lock()
	w.calls[id] = append(w.calls[id], webhookCall{query: r.URL.Query(), contentType: r.Header.Get("Content-Type"), body: req})
	w.mu.Unlock()
	switch {
	case strings.HasPrefix(id, "custom-fail"):
		http.Error(rw, "allocation refused by the test webhook", http.StatusInternalServerError)
		return
	case strings.HasPrefix(id, "custom-slow"):
		time.Sleep(webhookSlowDelay)
	}
	echo := req.DeviceRuntimeContext.Payload
	if len(echo) == 0 {
		echo = json.RawMessage("null")
	}
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(map[string]any{
		"iotHubHostName": pickHub(req.LinkedHubs),
		"payload":        map[string]any{"from": "webhook", "echo": echo},
		"initialTwin": map[string]any{
			"tags":       map[string]any{"allocatedBy": "webhook"},
			"properties": map[string]any{"desired": map[string]any{"plan": "gold"}},
		},
	})
}

// pickHub prefers the hub named hub2..., so that the choice differs from
// hub1-only enrollments and is visibly the webhook's.
func pickHub(hubs []string) string {
	for _, h := range hubs {
		if strings.HasPrefix(h, "hub2.") {
			return h
		}
	}
	if len(hubs) > 0 {
		return hubs[0]
	}
	return ""
}

// webhookExpectation is what a device's last webhook request must hold.
type webhookExpectation struct {
	RegID   string          `json:"regId"`
	Group   string          `json:"group"`   // "" for an individual enrollment
	Payload json.RawMessage `json:"payload"` // the device's payload; null for none
}

// check verifies the last request made for x.RegID against the §7.4 shape.
func (w *webhook) check(x webhookExpectation, hubs []string) (int, error) {
	w.mu.Lock()
	calls := slices.Clone(w.calls[x.RegID])
	w.mu.Unlock()
	if len(calls) == 0 {
		return 0, fmt.Errorf("webhook was not called for %s", x.RegID)
	}
	c := calls[len(calls)-1]
	rc := c.body.DeviceRuntimeContext
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.query.Get("code") != w.secret {
		add("webhook URL code = %q, want the function key", c.query.Get("code"))
	}
	if !strings.Contains(c.contentType, "application/json") {
		add("Content-Type = %q", c.contentType)
	}
	if rc.RegistrationID != x.RegID {
		add("deviceRuntimeContext.registrationId = %q", rc.RegistrationID)
	}
	if rc.SymmetricKey == nil {
		add("deviceRuntimeContext.symmetricKey is missing")
	}
	if !jsonEqual(rc.Payload, x.Payload) {
		add("deviceRuntimeContext.payload = %s, want %s", rc.Payload, x.Payload)
	}
	if got, want := sorted(c.body.LinkedHubs), sorted(hubs); !slices.Equal(got, want) {
		add("linkedHubs = %v, want %v", got, want)
	}
	errs = append(errs, w.checkEnrollment(c.body, x))
	return len(calls), errors.Join(errs...)
}

// checkEnrollment: the request carries the one enrollment that matched,
// with its attestation redacted to the type and no function key.
func (w *webhook) checkEnrollment(body allocationRequest, x webhookExpectation) error {
	en, idField, want, other := body.IndividualEnrollment, "registrationId", x.RegID, body.EnrollmentGroup
	if x.Group != "" {
		en, idField, want, other = body.EnrollmentGroup, "enrollmentGroupId", x.Group, body.IndividualEnrollment
	}
	switch {
	case en == nil:
		return fmt.Errorf("webhook request has no enrollment with %s %s", idField, want)
	case other != nil:
		return errors.New("webhook request carries both an individual enrollment and a group")
	case en[idField] != want:
		return fmt.Errorf("enrollment %s = %v, want %s", idField, en[idField], want)
	}
	if att, _ := json.Marshal(en["attestation"]); string(att) != `{"type":"symmetricKey"}` {
		return fmt.Errorf("enrollment attestation = %s, want it redacted to its type", att)
	}
	if b, _ := json.Marshal(en); bytes.Contains(b, []byte(w.secret)) {
		return errors.New("the enrollment sent to the webhook leaks the function key")
	}
	return nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// jsonEqual compares two JSON texts by value; absent equals null.
func jsonEqual(a, b json.RawMessage) bool {
	var va, vb any
	if len(bytes.TrimSpace(a)) > 0 && json.Unmarshal(a, &va) != nil {
		return false
	}
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &vb) != nil {
		return false
	}
	return equalJSONValues(va, vb)
}

// equalJSONValues compares decoded JSON values after re-encoding them
// (map key order is canonical in encoding/json).
func equalJSONValues(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
