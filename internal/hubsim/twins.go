package hubsim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/hub"
)

// Twin document rules of IoT Hub.
const (
	maxTwinDepth     = 10
	twinKeyForbidden = ". $"
	keyVersion       = "$version"
	keyMetadata      = "$metadata"
	keyLastUpdated   = "$lastUpdated"
)

// record is one device: identity and twin. Guarded by Sim.mu; JSON is the
// state file form.
type record struct {
	// raw is the record's JSON as of its last change (for saves that do
	// not hold the lock while they write); nil until first computed.
	raw             []byte
	Device          hub.Device     `json:"device"`
	Tags            map[string]any `json:"tags,omitempty"`
	Desired         map[string]any `json:"desired,omitempty"`
	Reported        map[string]any `json:"reported,omitempty"`
	TwinVersion     int64          `json:"twinVersion"`
	DesiredVersion  int64          `json:"desiredVersion"`
	ReportedVersion int64          `json:"reportedVersion"`
	DesiredUpdated  time.Time      `json:"desiredUpdated"`
	ReportedUpdated time.Time      `json:"reportedUpdated"`
}

func newRecord(now time.Time) *record {
	now = now.UTC()
	return &record{TwinVersion: 1, DesiredVersion: 1, ReportedVersion: 1, DesiredUpdated: now, ReportedUpdated: now}
}

// twinETag derives the twin etag from its version (base64 of the 8-byte
// big-endian version, like IoT Hub's "AAAAAAAAAAE=").
func twinETag(version int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(version))
	return base64.StdEncoding.EncodeToString(b[:])
}

// twin renders the twin; its maps are copies.
func (r *record) twin() hub.Twin {
	d := cloneDevice(r.Device)
	t := hub.Twin{
		DeviceID: d.DeviceID, ETag: twinETag(r.TwinVersion), DeviceETag: d.ETag, Version: r.TwinVersion,
		Status: d.Status, Capabilities: d.Capabilities, ConnectionState: d.ConnectionState,
		Tags: cloneDoc(r.Tags),
		Properties: hub.TwinProperties{
			Desired:  propertyDoc(r.Desired, r.DesiredVersion, r.DesiredUpdated),
			Reported: propertyDoc(r.Reported, r.ReportedVersion, r.ReportedUpdated),
		},
	}
	if d.Auth != nil {
		t.AuthenticationType = d.Auth.Type
		t.X509Thumbprint = d.Auth.X509Thumbprint
	}
	return t
}

func propertyDoc(m map[string]any, version int64, updated time.Time) map[string]any {
	out := cloneDoc(m)
	if out == nil {
		out = map[string]any{}
	}
	out[keyMetadata] = map[string]any{keyLastUpdated: updated.UTC().Format(time.RFC3339Nano)}
	out[keyVersion] = version
	return out
}

// twinInput is a twin as a client writes it.
type twinInput struct {
	Tags       map[string]any `json:"tags"`
	Properties struct {
		Desired  map[string]any `json:"desired"`
		Reported map[string]any `json:"reported"`
	} `json:"properties"`
}

func decodeTwin(body []byte) (twinInput, error) {
	var in twinInput
	if len(bytes.TrimSpace(body)) == 0 {
		return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "the request body is required")
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "the request body is not a twin: %v", err)
	}
	for k := range in.Properties.Reported {
		if !strings.HasPrefix(k, "$") {
			return in, errorf(http.StatusBadRequest, codeArgumentInvalid, "reported properties can only be written by the device")
		}
	}
	dropMeta(in.Properties.Desired)
	if err := validateDoc(in.Tags, 1); err != nil {
		return in, err
	}
	return in, validateDoc(in.Properties.Desired, 1)
}

// dropMeta removes the read-only "$version" and "$metadata" keys a client
// may send back from a twin it read.
func dropMeta(m map[string]any) {
	delete(m, keyVersion)
	delete(m, keyMetadata)
}

func validateDoc(m map[string]any, depth int) error {
	if m == nil {
		return nil
	}
	if depth > maxTwinDepth {
		return errorf(http.StatusBadRequest, codeArgumentInvalid, "twin documents may nest at most %d levels", maxTwinDepth)
	}
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, twinKeyForbidden) {
			return errorf(http.StatusBadRequest, codeArgumentInvalid, "twin key %q may not be empty nor contain '.', '$' or ' '", k)
		}
		if sub, ok := v.(map[string]any); ok {
			if err := validateDoc(sub, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// twinRecord finds the device of c and checks If-Match against its twin.
func twinRecord(h *hubState, c call) (*record, error) {
	rec, ok := h.devices[c.id]
	if !ok {
		return nil, errorf(http.StatusNotFound, codeDeviceNotFound, "Device %s not found", c.id)
	}
	if c.ifMatch != "" && !etagMatches(c.ifMatch, twinETag(rec.TwinVersion)) {
		return nil, errorf(http.StatusPreconditionFailed, codePreconditionFailed, "Precondition failed: twin etag mismatch")
	}
	return rec, nil
}

func (s *Sim) getTwin(h *hubState, c call) (reply, error) {
	rec, ok := h.devices[c.id]
	if !ok {
		return reply{}, errorf(http.StatusNotFound, codeDeviceNotFound, "Device %s not found", c.id)
	}
	t := rec.twin()
	return reply{status: http.StatusOK, body: t, etag: t.ETag}, nil
}

// patchTwin merges tags and desired properties (JSON merge patch).
func (s *Sim) patchTwin(h *hubState, c call) (reply, error) {
	rec, err := twinRecord(h, c)
	if err != nil {
		return reply{}, err
	}
	in, err := decodeTwin(c.body)
	if err != nil {
		return reply{}, err
	}
	if in.Tags != nil {
		rec.Tags = mergePatch(rec.Tags, in.Tags)
	}
	if in.Properties.Desired != nil {
		rec.Desired = mergePatch(rec.Desired, in.Properties.Desired)
		rec.touchDesired(s.now())
	}
	rec.TwinVersion++
	t := rec.twin()
	return reply{status: http.StatusOK, body: t, etag: t.ETag}, nil
}

// replaceTwin replaces tags and desired properties; reported ones stay.
func (s *Sim) replaceTwin(h *hubState, c call) (reply, error) {
	rec, err := twinRecord(h, c)
	if err != nil {
		return reply{}, err
	}
	in, err := decodeTwin(c.body)
	if err != nil {
		return reply{}, err
	}
	rec.Tags = mergePatch(nil, in.Tags)
	rec.Desired = mergePatch(nil, in.Properties.Desired)
	rec.touchDesired(s.now())
	rec.TwinVersion++
	t := rec.twin()
	return reply{status: http.StatusOK, body: t, etag: t.ETag}, nil
}

func (r *record) touchDesired(now time.Time) {
	r.DesiredVersion++
	r.DesiredUpdated = now.UTC()
}

// mergePatch applies patch to a copy of dst (RFC 7386: null deletes,
// objects merge, everything else replaces) and returns it; nil when empty.
func mergePatch(dst, patch map[string]any) map[string]any {
	out := mergeInto(cloneDoc(dst), patch)
	if len(out) == 0 {
		return nil
	}
	return out
}

// mergeInto applies patch to dst in place and returns it (never nil).
func mergeInto(dst, patch map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			cur, _ := dst[k].(map[string]any)
			dst[k] = mergeInto(cur, pv)
		default:
			dst[k] = cloneValue(v)
		}
	}
	return dst
}

// cloneDoc deep-copies a JSON object (nil stays nil).
func cloneDoc(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneDoc(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
