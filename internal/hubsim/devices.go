package hubsim

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/hub"
)

// Limits of IoT Hub device identities.
const (
	maxDeviceIDLen = 128
	minKeyBytes    = 16
	maxKeyBytes    = 64
	maxListTop     = 1000
	// deviceIDSpecials are the non-alphanumeric characters IoT Hub allows
	// in a device ID.
	deviceIDSpecials = "-.+%_#*?!(),:=@$'"
	// dotnetEpochTicks is 1970-01-01 in .NET ticks; IoT Hub generation IDs
	// look like tick counts.
	dotnetEpochTicks = 621355968000000000
	// connectionStateDisconnected is the state of every simulated device.
	connectionStateDisconnected = "Disconnected"
)

// deviceInput is what a client may set on PUT /devices/{id}; the other
// fields of a sent identity (etag, generationId, counters, times) are the
// hub's and are ignored, as IoT Hub ignores them.
type deviceInput struct {
	DeviceID     string              `json:"deviceId"`
	Status       string              `json:"status"`
	StatusReason string              `json:"statusReason"`
	Auth         *hub.Authentication `json:"authentication"`
	Capabilities *hub.Capabilities   `json:"capabilities"`
	DeviceScope  string              `json:"deviceScope"`
	ParentScopes []string            `json:"parentScopes"`
}

func validDeviceID(id string) bool {
	if id == "" || len(id) > maxDeviceIDLen {
		return false
	}
	for _, r := range id {
		alnum := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		if !alnum && !strings.ContainsRune(deviceIDSpecials, r) {
			return false
		}
	}
	return true
}

func decodeDevice(body []byte, pathID string) (deviceInput, error) {
	var in deviceInput
	if len(bytes.TrimSpace(body)) == 0 {
		return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "the request body is required")
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "the request body is not a device identity: %v", err)
	}
	if in.DeviceID == "" {
		in.DeviceID = pathID
	}
	if in.DeviceID != pathID {
		return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "deviceId %q in the body does not match %q in the path", in.DeviceID, pathID)
	}
	return in, nil
}

func parseStatus(s string) (hub.Status, error) {
	switch strings.ToLower(s) {
	case "", string(hub.StatusEnabled):
		return hub.StatusEnabled, nil
	case string(hub.StatusDisabled):
		return hub.StatusDisabled, nil
	}
	return "", errorf(http.StatusBadRequest, codeArgumentInvalid, "status %q is not enabled or disabled", s)
}

// normalizeAuth validates in and fills it: a sas device gets generated keys
// where it sends none (keeping prev's keys on update), thumbprints are only
// kept for selfSigned, keys only for sas.
func normalizeAuth(in, prev *hub.Authentication) (*hub.Authentication, error) {
	if in == nil {
		in = &hub.Authentication{}
	}
	typ, err := authType(in)
	if err != nil {
		return nil, err
	}
	out := &hub.Authentication{Type: typ}
	switch typ {
	case hub.AuthSAS:
		out.SymmetricKey, err = symmetricKeys(in.SymmetricKey, prev)
	case hub.AuthSelfSigned:
		out.X509Thumbprint, err = thumbprints(in.X509Thumbprint)
	}
	return out, err
}

func authType(in *hub.Authentication) (hub.AuthType, error) {
	for _, t := range []hub.AuthType{hub.AuthSAS, hub.AuthSelfSigned, hub.AuthCA, hub.AuthNone} {
		if strings.EqualFold(string(in.Type), string(t)) {
			return t, nil
		}
	}
	if in.Type != "" {
		return "", errorf(http.StatusBadRequest, codeArgumentInvalid, "authentication type %q is not supported", in.Type)
	}
	if tp := in.X509Thumbprint; tp != nil && (tp.PrimaryThumbprint != "" || tp.SecondaryThumbprint != "") {
		return hub.AuthSelfSigned, nil
	}
	return hub.AuthSAS, nil
}

func symmetricKeys(in *hub.SymmetricKey, prev *hub.Authentication) (*hub.SymmetricKey, error) {
	out := hub.SymmetricKey{}
	if in != nil {
		out = *in
	}
	var old hub.SymmetricKey
	if prev != nil && prev.SymmetricKey != nil {
		old = *prev.SymmetricKey
	}
	for _, k := range []struct{ v, old *string }{{&out.PrimaryKey, &old.PrimaryKey}, {&out.SecondaryKey, &old.SecondaryKey}} {
		switch {
		case *k.v != "":
			b, err := base64.StdEncoding.DecodeString(*k.v)
			if err != nil || len(b) < minKeyBytes || len(b) > maxKeyBytes {
				return nil, errorf(http.StatusBadRequest, codeArgumentInvalid, "a symmetric key must be base64 of %d to %d bytes", minKeyBytes, maxKeyBytes)
			}
		case *k.old != "":
			*k.v = *k.old
		default:
			*k.v = randomKey()
		}
	}
	return &out, nil
}

func thumbprints(in *hub.X509Thumbprint) (*hub.X509Thumbprint, error) {
	if in == nil || (in.PrimaryThumbprint == "" && in.SecondaryThumbprint == "") {
		return nil, errorf(http.StatusBadRequest, codeArgumentInvalid, "a selfSigned device needs an x509Thumbprint")
	}
	for _, t := range []string{in.PrimaryThumbprint, in.SecondaryThumbprint} {
		if _, err := hex.DecodeString(t); t != "" && (err != nil || (len(t) != 40 && len(t) != 64)) {
			return nil, errorf(http.StatusBadRequest, codeArgumentInvalid, "thumbprint %q is not a hex SHA-1 or SHA-256", t)
		}
	}
	out := *in
	return &out, nil
}

// etagMatches compares an If-Match header with an etag; "*" matches all.
func etagMatches(ifMatch, etag string) bool {
	for _, v := range strings.Split(ifMatch, ",") {
		v = strings.Trim(strings.TrimPrefix(strings.TrimSpace(v), "W/"), `"`)
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}

// nextETag returns a fresh device etag (base64 of a counter, as IoT Hub's
// look).
func (h *hubState) nextETag() string {
	h.seq++
	return base64.StdEncoding.EncodeToString([]byte(strconv.FormatUint(h.seq, 10)))
}

// nextGenerationID returns a generation ID that never repeats in this hub.
func (h *hubState) nextGenerationID(now time.Time) string {
	g := now.UnixNano()/100 + dotnetEpochTicks
	if g <= h.lastGen {
		g = h.lastGen + 1
	}
	h.lastGen = g
	return strconv.FormatInt(g, 10)
}

func (s *Sim) getDevice(h *hubState, c call) (reply, error) {
	rec, ok := h.devices[c.id]
	if !ok {
		return reply{}, errorf(http.StatusNotFound, codeDeviceNotFound, "Device %s not found", c.id)
	}
	return reply{status: http.StatusOK, body: cloneDevice(rec.Device), etag: rec.Device.ETag}, nil
}

// putDevice creates (no If-Match; 409 if the device exists) or updates
// (If-Match; 404 if absent, 412 if the etag differs) a device identity.
func (s *Sim) putDevice(h *hubState, c call) (reply, error) {
	if !validDeviceID(c.id) {
		return reply{}, errorf(http.StatusBadRequest, codeArgumentInvalid, "device ID %q is invalid: up to %d ASCII alphanumerics or %s", c.id, maxDeviceIDLen, deviceIDSpecials)
	}
	in, err := decodeDevice(c.body, c.id)
	if err != nil {
		return reply{}, err
	}
	rec := h.devices[c.id]
	switch {
	case c.ifMatch == "" && rec != nil:
		return reply{}, errorf(http.StatusConflict, codeDeviceAlreadyExists, "A device with ID '%s' is already registered.", c.id)
	case c.ifMatch != "" && rec == nil:
		return reply{}, errorf(http.StatusNotFound, codeDeviceNotFound, "Device %s not found", c.id)
	case rec != nil && !etagMatches(c.ifMatch, rec.Device.ETag):
		return reply{}, errorf(http.StatusPreconditionFailed, codePreconditionFailed, "Precondition failed: device etag mismatch")
	}
	d, err := s.buildDevice(h, in, rec)
	if err != nil {
		return reply{}, err
	}
	if rec == nil {
		rec = newRecord(s.now())
		d.GenerationID = h.nextGenerationID(s.now())
		h.devices[c.id] = rec
	}
	rec.Device = d
	return reply{status: http.StatusOK, body: cloneDevice(d), etag: d.ETag}, nil
}

// buildDevice makes the stored identity from in, over prev (nil: new).
func (s *Sim) buildDevice(h *hubState, in deviceInput, prev *record) (hub.Device, error) {
	status, err := parseStatus(in.Status)
	if err != nil {
		return hub.Device{}, err
	}
	d := hub.Device{DeviceID: in.DeviceID, Status: status, StatusReason: in.StatusReason, ConnectionState: connectionStateDisconnected,
		Capabilities: &hub.Capabilities{}, DeviceScope: in.DeviceScope, ParentScopes: slices.Clone(in.ParentScopes)}
	if in.Capabilities != nil {
		d.Capabilities.IoTEdge = in.Capabilities.IoTEdge
	}
	var prevAuth *hub.Authentication
	if prev != nil {
		prevAuth = prev.Device.Auth
		d.GenerationID = prev.Device.GenerationID
		d.StatusUpdatedTime = prev.Device.StatusUpdatedTime
		if prev.Device.Status != status {
			d.StatusUpdatedTime = s.now().UTC()
		}
	}
	if d.Auth, err = normalizeAuth(in.Auth, prevAuth); err != nil {
		return hub.Device{}, err
	}
	d.ETag = h.nextETag()
	return d, nil
}

func (s *Sim) deleteDevice(h *hubState, c call) (reply, error) {
	rec, ok := h.devices[c.id]
	if !ok {
		return reply{}, errorf(http.StatusNotFound, codeDeviceNotFound, "Device %s not found", c.id)
	}
	if c.ifMatch != "" && !etagMatches(c.ifMatch, rec.Device.ETag) {
		return reply{}, errorf(http.StatusPreconditionFailed, codePreconditionFailed, "Precondition failed: device etag mismatch")
	}
	delete(h.devices, c.id)
	return reply{status: http.StatusNoContent}, nil
}

func (s *Sim) listDevices(h *hubState, c call) (reply, error) {
	top := maxListTop
	if v := c.query.Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListTop {
			return reply{}, errorf(http.StatusBadRequest, codeArgumentInvalid, "top must be 1 to %d", maxListTop)
		}
		top = n
	}
	return reply{status: http.StatusOK, body: h.list(top)}, nil
}

// list returns up to top (0: all) identities sorted by ID; never nil.
func (h *hubState) list(top int) []hub.Device {
	ids := make([]string, 0, len(h.devices))
	for id := range h.devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if top > 0 && len(ids) > top {
		ids = ids[:top]
	}
	out := make([]hub.Device, 0, len(ids))
	for _, id := range ids {
		out = append(out, cloneDevice(h.devices[id].Device))
	}
	return out
}

// cloneDevice deep-copies d.
func cloneDevice(d hub.Device) hub.Device {
	if d.Auth != nil {
		a := *d.Auth
		if a.SymmetricKey != nil {
			k := *a.SymmetricKey
			a.SymmetricKey = &k
		}
		if a.X509Thumbprint != nil {
			t := *a.X509Thumbprint
			a.X509Thumbprint = &t
		}
		d.Auth = &a
	}
	if d.Capabilities != nil {
		c := *d.Capabilities
		d.Capabilities = &c
	}
	d.ParentScopes = slices.Clone(d.ParentScopes)
	return d
}
