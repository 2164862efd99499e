package obs

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// Operations of the device API (the operation label).
const (
	OpRegister           = "register"
	OpOperationStatus    = "operation_status"
	OpRegistrationStatus = "registration_status"
	OpAuthenticate       = "authenticate"
)

// Registration results besides the DPS statuses assigned, failed and
// disabled (the result label).
const (
	ResultUnauthorized = "unauthorized" // 401, 403
	ResultNotFound     = "not_found"    // 404: unknown ID scope or enrollment
	ResultThrottled    = "throttled"    // 429
	ResultBadRequest   = "bad_request"  // other 4xx
	ResultError        = "error"        // 5xx
)

// Device wraps the engine (or the forwarding engine) that the device front
// ends call, and measures every call: latency and answer by protocol and
// operation, throttled answers, and registrations by result, protocol and
// attestation.
//
// A registration is counted once, when the device is told its outcome: a
// register answered with a terminal status (assigned, failed, disabled) or
// refused (401, 404, 429, ...), an MQTT connection refused at CONNECT
// (Authenticate), or else the first operation-status poll
// that the device is answered a terminal status (a device stops polling
// then; one that polls again is counted again). "assigning" is not a
// result.
func Device(d engine.Device) engine.Device {
	return &device{d: d, m: metrics()}
}

type device struct {
	d engine.Device
	m *collectors
}

func (x *device) Authenticate(ctx context.Context, req *engine.Request) error {
	start := time.Now()
	err := x.d.Authenticate(ctx, req)
	x.observe(req, OpAuthenticate, start, http.StatusOK, err)
	if err != nil { // MQTT CONNECT refused: the device's registration ends here
		x.count(req, errorResult(err))
	}
	return err
}

func (x *device) Register(ctx context.Context, req *engine.Request) (*engine.Result, error) {
	start := time.Now()
	res, err := x.d.Register(ctx, req)
	x.observe(req, OpRegister, start, http.StatusAccepted, err)
	switch {
	case err != nil:
		x.count(req, errorResult(err))
	case res != nil && res.Status != nil && terminal(res.Status.Status):
		x.count(req, res.Status.Status)
	}
	return res, err
}

func (x *device) OperationStatus(ctx context.Context, req *engine.Request, operationID string) (*engine.Result, error) {
	start := time.Now()
	res, err := x.d.OperationStatus(ctx, req, operationID)
	code := http.StatusAccepted
	if err == nil && res != nil && res.Status != nil && terminal(res.Status.Status) {
		code = http.StatusOK
		x.count(req, res.Status.Status)
	}
	x.observe(req, OpOperationStatus, start, code, err)
	return res, err
}

func (x *device) RegistrationStatus(ctx context.Context, req *engine.Request) (*model.DeviceRegistrationResult, error) {
	start := time.Now()
	res, err := x.d.RegistrationStatus(ctx, req)
	x.observe(req, OpRegistrationStatus, start, http.StatusOK, err)
	return res, err
}

// observe records one call: its latency, its answer's status code (ok
// when err is nil) and, when throttled, the throttled counter.
func (x *device) observe(req *engine.Request, op string, start time.Time, ok int, err error) {
	proto := protocol(req)
	x.m.deviceLatency.WithLabelValues(proto, op).Observe(time.Since(start).Seconds())
	code := ok
	if err != nil {
		code = status(err)
	}
	x.m.deviceRequests.WithLabelValues(proto, op, strconv.Itoa(code)).Inc()
	if code == http.StatusTooManyRequests {
		x.m.throttled.WithLabelValues("device", proto, op).Inc()
	}
}

func (x *device) count(req *engine.Request, result string) {
	x.m.registrations.WithLabelValues(result, protocol(req), attestation(req)).Inc()
}

func terminal(s string) bool {
	switch s {
	case model.OpStatusAssigned, model.OpStatusFailed, model.OpStatusDisabled:
		return true
	}
	return false
}

// status is the HTTP status a front end answers for err.
func status(err error) int {
	var e *apierr.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status <= 599 {
		return e.Status
	}
	return http.StatusInternalServerError
}

func errorResult(err error) string {
	switch s := status(err); {
	case s == http.StatusUnauthorized, s == http.StatusForbidden:
		return ResultUnauthorized
	case s == http.StatusNotFound:
		return ResultNotFound
	case s == http.StatusTooManyRequests:
		return ResultThrottled
	case s < 500:
		return ResultBadRequest
	}
	return ResultError
}

// protocol is the front end's transport, bounded to the known values.
func protocol(req *engine.Request) string {
	switch req.Transport {
	case "https", "mqtt", "mqtt-ws", "amqp", "amqp-ws":
		return req.Transport
	}
	return "unknown"
}

// attestation is the kind of credential the device presented: a TLS client
// chain (x509), a SAS token (symmetricKey), or none.
func attestation(req *engine.Request) string {
	switch {
	case len(req.PeerCertificates) > 0:
		return model.AttestationX509
	case req.SASToken != "":
		return model.AttestationSymmetricKey
	}
	return "none"
}
