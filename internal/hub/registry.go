package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Registry paths (dist/registry.js of the azure-iothub npm package).
const (
	pathDevices = "/devices/"
	pathTwins   = "/twins/"
)

// ETagAny in Device.ETag or Twin.ETag makes an update unconditional.
const ETagAny = "*"

// MaxListTop is the largest page ListDevices asks for.
const MaxListTop = 1000

// ErrInvalidArgument is returned, before any request, for an empty device ID.
var ErrInvalidArgument = errors.New("hub: invalid argument")

func devicePath(id string) string { return pathDevices + url.PathEscape(id) }
func twinPath(id string) string   { return pathTwins + url.PathEscape(id) }

func checkID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty device ID", ErrInvalidArgument)
	}
	return nil
}

// CreateOrUpdateDevice writes d and returns the identity the hub stored
// (with generated keys, etag and generationId).
//
// With d.ETag empty it creates the device (PUT without If-Match, as the
// SDKs' create does) and, when the device already exists (409), updates it
// unconditionally (If-Match: "*"). With d.ETag set it updates only if the
// stored etag matches (ErrPreconditionFailed otherwise; ETagAny forces), and
// a missing device is ErrNotFound.
//
// An update replaces the identity: send the keys or thumbprints the device
// must keep. (The simulator keeps stored keys when an update of a sas
// device sends none; do not rely on that with a real hub.)
func (c *Client) CreateOrUpdateDevice(ctx context.Context, d Device) (Device, error) {
	if err := checkID(d.DeviceID); err != nil {
		return Device{}, err
	}
	put := func(ifMatch string) (Device, error) {
		var out Device
		err := c.do(ctx, request{method: http.MethodPut, path: devicePath(d.DeviceID), ifMatch: ifMatch, body: writable(d), out: &out})
		return out, err
	}
	if d.ETag != "" {
		return put(d.ETag)
	}
	out, err := put("")
	if errors.Is(err, ErrConflict) {
		return put(ETagAny)
	}
	return out, err
}

// writable strips the fields the hub owns, so a Device read from the hub
// can be written back.
func writable(d Device) Device {
	return Device{
		DeviceID:     d.DeviceID,
		Status:       d.Status,
		StatusReason: d.StatusReason,
		Auth:         d.Auth,
		Capabilities: d.Capabilities,
		DeviceScope:  d.DeviceScope,
		ParentScopes: d.ParentScopes,
	}
}

// GetDevice reads a device identity; ErrNotFound when absent.
func (c *Client) GetDevice(ctx context.Context, id string) (Device, error) {
	if err := checkID(id); err != nil {
		return Device{}, err
	}
	var out Device
	err := c.do(ctx, request{method: http.MethodGet, path: devicePath(id), out: &out})
	return out, err
}

// DeleteDevice deletes a device identity unconditionally (If-Match: "*");
// ErrNotFound when absent.
func (c *Client) DeleteDevice(ctx context.Context, id string) error {
	return c.DeleteDeviceIfMatch(ctx, id, ETagAny)
}

// DeleteDeviceIfMatch deletes a device identity whose etag is etag
// (ETagAny: any); ErrPreconditionFailed when it differs.
func (c *Client) DeleteDeviceIfMatch(ctx context.Context, id, etag string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if etag == "" {
		etag = ETagAny
	}
	return c.do(ctx, request{method: http.MethodDelete, path: devicePath(id), ifMatch: etag})
}

// ListDevices returns up to top identities (top <= 0 or above MaxListTop
// means MaxListTop).
func (c *Client) ListDevices(ctx context.Context, top int) ([]Device, error) {
	if top <= 0 || top > MaxListTop {
		top = MaxListTop
	}
	var out []Device
	q := url.Values{"top": {strconv.Itoa(top)}}
	err := c.do(ctx, request{method: http.MethodGet, path: "/devices", query: q, out: &out})
	return out, err
}

// GetTwin reads a device twin; ErrNotFound when the device is absent.
func (c *Client) GetTwin(ctx context.Context, id string) (Twin, error) {
	if err := checkID(id); err != nil {
		return Twin{}, err
	}
	var out Twin
	err := c.do(ctx, request{method: http.MethodGet, path: twinPath(id), out: &out})
	return out, err
}

// UpdateTwin merges patch.Tags and patch.Properties.Desired into the twin
// (JSON merge patch: a nil value deletes the key) and returns the new twin.
// patch.ETag, when set, must match the twin's etag (ErrPreconditionFailed);
// empty means unconditional.
func (c *Client) UpdateTwin(ctx context.Context, id string, patch Twin) (Twin, error) {
	return c.writeTwin(ctx, http.MethodPatch, id, patch)
}

// ReplaceTwin replaces the tags and desired properties of the twin with
// those of twin (reported properties are the device's and are kept).
// twin.ETag works as in UpdateTwin.
func (c *Client) ReplaceTwin(ctx context.Context, id string, twin Twin) (Twin, error) {
	return c.writeTwin(ctx, http.MethodPut, id, twin)
}

func (c *Client) writeTwin(ctx context.Context, method, id string, t Twin) (Twin, error) {
	if err := checkID(id); err != nil {
		return Twin{}, err
	}
	body := Twin{DeviceID: id, Tags: t.Tags, Properties: TwinProperties{Desired: t.Properties.Desired}}
	etag := t.ETag
	if etag == "" {
		etag = ETagAny
	}
	var out Twin
	err := c.do(ctx, request{method: method, path: twinPath(id), ifMatch: etag, body: body, out: &out})
	return out, err
}

// Check proves that the hub answers and accepts the key: it reads a device
// that does not exist and expects 404. It returns nil then (or if such a
// device happens to exist), ErrUnauthorized for a wrong key or policy,
// ErrUnavailable when the hub is down, and other errors as they come.
func (c *Client) Check(ctx context.Context) error {
	_, err := c.GetDevice(ctx, "opendps-check-"+rand.Text())
	if errors.Is(err, ErrNotFound) {
		var he *Error
		if errors.As(err, &he) && he.Code == codeIotHubNotFound {
			return err
		}
		return nil
	}
	return err
}

// codeIotHubNotFound is the error code of a 404 for a hub that does not
// exist (the host answered, but not as that hub).
const codeIotHubNotFound = "IotHubNotFound"
