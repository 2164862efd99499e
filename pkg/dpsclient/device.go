package dpsclient

// Device API client (spec/dps-protocol.md §2, SAS tokens §3.1, group keys
// §3.2), following the HTTP flow of the Node SDK
// (azure-iot-provisioning-device-http, spec/wire-captures.md §3).

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/sas"
)

// Types of the device API, usable by callers outside this module.
type (
	RegistrationOperationStatus = model.RegistrationOperationStatus
	DeviceRegistrationResult    = model.DeviceRegistrationResult
)

// Defaults and wire values of the device client.
const (
	// DefaultDeviceEndpoint is the global device endpoint of Azure DPS.
	DefaultDeviceEndpoint = "global.azure-devices-provisioning.net"
	// DeviceAPIVersion is the api-version the Node, C#, Python and embedded
	// C device SDKs send.
	DeviceAPIVersion = "2019-03-31"
	// DefaultPollInterval is the wait between polls when the service sends
	// no Retry-After (Node: defaultPollingInterval).
	DefaultPollInterval = 2 * time.Second
	// DefaultRequestTimeout bounds each HTTP round trip (Node: 30 s).
	DefaultRequestTimeout = 30 * time.Second
	// DefaultMaxThrottleRetries bounds the waits on 429 answers when
	// DeviceOptions.RetryThrottled is set.
	DefaultMaxThrottleRetries = 5
	// DeviceUserAgent is the default User-Agent.
	DeviceUserAgent = "opendps-dpsclient/1"

	deviceTokenTTL = time.Hour
	deviceKeyName  = "registration" // skn of device tokens
	maxRetryAfter  = 300 * time.Second
)

// Errors of the device client. A *DeviceError matches ErrDeviceUnauthorized,
// ErrDeviceNotFound or ErrThrottled by its HTTP status; a
// *RegistrationError matches ErrRegistrationFailed or
// ErrRegistrationDisabled by its status.
var (
	ErrDeviceOptions        = errors.New("dpsclient: invalid device options")
	ErrDeviceUnauthorized   = errors.New("dpsclient: device unauthorized")
	ErrDeviceNotFound       = errors.New("dpsclient: not found")
	ErrThrottled            = errors.New("dpsclient: throttled")
	ErrRegistrationFailed   = errors.New("dpsclient: registration failed")
	ErrRegistrationDisabled = errors.New("dpsclient: registration disabled")
)

// DeviceError is an HTTP error answer of the device API (spec §2.7).
type DeviceError struct {
	StatusCode int    `json:"-"`         // HTTP status
	ErrorCode  int    `json:"errorCode"` // six-digit DPS code; 0 when the body had none
	Message    string `json:"message"`
	TrackingID string `json:"trackingId"`
	// RetryAfter is the Retry-After header (whole seconds); 0 when absent.
	RetryAfter time.Duration `json:"-"`
}

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("dpsclient: device API %d (%d): %s", e.StatusCode, e.ErrorCode, e.Message)
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return s
}

// Is maps the HTTP status to the sentinel errors.
func (e *DeviceError) Is(target error) bool {
	switch e.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return target == ErrDeviceUnauthorized
	case http.StatusNotFound:
		return target == ErrDeviceNotFound
	case http.StatusTooManyRequests:
		return target == ErrThrottled
	}
	return false
}

// RegistrationError is a registration that ended other than "assigned":
// status failed or disabled (or a status this client does not know).
type RegistrationError struct {
	Status    string
	ErrorCode int    // registrationState.errorCode
	Message   string // registrationState.errorMessage
}

func (e *RegistrationError) Error() string {
	if e.ErrorCode != 0 || e.Message != "" {
		return fmt.Sprintf("dpsclient: registration %s (%d): %s", e.Status, e.ErrorCode, e.Message)
	}
	return "dpsclient: registration " + e.Status
}

// Is maps the status to the sentinel errors.
func (e *RegistrationError) Is(target error) bool {
	switch {
	case strings.EqualFold(e.Status, model.OpStatusFailed):
		return target == ErrRegistrationFailed
	case strings.EqualFold(e.Status, model.OpStatusDisabled):
		return target == ErrRegistrationDisabled
	}
	return false
}

// DeviceOptions say whom to register, where and with which credential.
// Exactly one of SymmetricKey, GroupKey and Certificate is set, or none of
// them when HTTPClient already presents a client certificate.
type DeviceOptions struct {
	// Protocol is ProtocolHTTPS ("" too) or ProtocolMQTT (MQTT 3.1.1 over
	// TLS, as the Node SDK's Mqtt transport speaks it; Register only).
	Protocol string
	// Endpoint is host[:port] of the device API ("" means
	// DefaultDeviceEndpoint); an https:// (mqtts:// for MQTT) prefix is
	// tolerated. Without a port MQTT uses DefaultMQTTPort.
	Endpoint string
	// IDScope of the instance; required.
	IDScope string
	// RegistrationID of the device; required, except with Certificate,
	// whose subject common name is the default.
	RegistrationID string
	// SymmetricKey is the device's own key (base64): an individual
	// enrollment's, or one already derived from a group key.
	SymmetricKey string
	// GroupKey is an enrollment group's key (base64); the device key is
	// derived from it (spec §3.2).
	GroupKey string
	// Certificate is the device's TLS client certificate (X.509
	// attestation). It is only used when HTTPClient is nil.
	Certificate *tls.Certificate
	// Payload is sent as the register body's "payload" (a JSON value; the
	// custom allocation webhook sees it). nil sends none.
	Payload json.RawMessage
	// APIVersion ("" means DeviceAPIVersion).
	APIVersion string
	// HTTPClient sends the requests. nil builds one with
	// DeviceHTTPClient(CAFile, Certificate) for this call only.
	HTTPClient *http.Client
	// CAFile is a PEM file of CAs to trust instead of the system roots;
	// only used when HTTPClient (HTTPS) or TLSConfig (MQTT) is nil.
	CAFile string
	// TLSConfig, for MQTT, replaces the configuration built from CAFile
	// and Certificate (a load generator shares one). It is cloned.
	TLSConfig *tls.Config
	// PollInterval, when positive, is the wait before every poll. Zero
	// waits what the service's Retry-After says, else DefaultPollInterval.
	PollInterval time.Duration
	// RequestTimeout bounds each round trip (0: DefaultRequestTimeout).
	// The whole registration is bounded by the context only.
	RequestTimeout time.Duration
	// RetryThrottled waits out 429 answers (Retry-After, else the poll
	// interval) up to MaxThrottleRetries times, then returns the
	// *DeviceError. When false a 429 is returned at once.
	RetryThrottled bool
	// MaxThrottleRetries (0: DefaultMaxThrottleRetries).
	MaxThrottleRetries int
	// UserAgent ("" means DeviceUserAgent).
	UserAgent string
}

// RegistrationResult is the last answer of a registration with counts of
// what it took.
type RegistrationResult struct {
	RegistrationOperationStatus
	// RoundTrips counts every HTTP request sent: the register call, polls
	// and retries. 1 on the fast path.
	RoundTrips int `json:"roundTrips"`
	// Polls counts operation-status requests.
	Polls int `json:"polls"`
	// ThrottleRetries counts 429 answers waited out (RetryThrottled).
	ThrottleRetries int `json:"throttleRetries"`
}

// State returns the registration state, never nil.
func (r *RegistrationResult) State() *DeviceRegistrationResult {
	if r.RegistrationState == nil {
		return &DeviceRegistrationResult{}
	}
	return r.RegistrationState
}

// Register registers a device: PUT {scope}/registrations/{id}/register,
// then, while the answer says "assigning", polls the operation after the
// Retry-After it was given. It returns nil error only for "assigned";
// "failed" and "disabled" give a *RegistrationError, HTTP errors a
// *DeviceError, transport errors those of net/http. Whenever the options
// are valid the result is not nil, even with an error: it holds the last
// answer (Status "" when none came) and the round trips made. The context
// bounds the whole registration, polls included; Register is safe for
// concurrent use (it shares nothing but opts.HTTPClient).
func Register(ctx context.Context, opts DeviceOptions) (*RegistrationResult, error) {
	switch opts.Protocol {
	case "", ProtocolHTTPS:
	case ProtocolMQTT:
		return registerMQTT(ctx, opts)
	default:
		return nil, fmt.Errorf("%w: Protocol %q: want %s or %s", ErrDeviceOptions, opts.Protocol, ProtocolHTTPS, ProtocolMQTT)
	}
	d, err := newDevice(opts)
	if err != nil {
		return nil, err
	}
	defer d.close()
	return d.register(ctx)
}

// RegistrationStatus looks up the device's registration (POST
// {scope}/registrations/{id}, spec §2.5), authenticating like Register.
// A device never registered gives a *DeviceError matching
// ErrDeviceNotFound.
func RegistrationStatus(ctx context.Context, opts DeviceOptions) (*DeviceRegistrationResult, error) {
	if opts.Protocol != "" && opts.Protocol != ProtocolHTTPS {
		return nil, fmt.Errorf("%w: the status lookup is HTTPS only (spec §2.5)", ErrDeviceOptions)
	}
	d, err := newDevice(opts)
	if err != nil {
		return nil, err
	}
	defer d.close()
	var out DeviceRegistrationResult
	res := &RegistrationResult{}
	if _, err := d.call(ctx, res, http.MethodPost, d.regPath(), d.body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeviceHTTPClient returns a client for the device API that trusts the PEM
// file caFile (system roots when empty), presents cert when not nil, and
// sends *.localhost names to loopback. It speaks HTTP/1.1 with keep-alive,
// as the Node SDK does.
func DeviceHTTPClient(caFile string, cert *tls.Certificate) (*http.Client, error) {
	tc, err := DeviceTLSConfig(caFile, cert)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: NewDeviceTransport(tc, false)}, nil
}

// DeviceTLSConfig returns the TLS configuration of DeviceHTTPClient.
//
// It offers the key exchanges device TLS stacks offer (X25519, then P-256;
// OpenSSL 3.0 under the Node SDK, mbedTLS and wolfSSL do not offer the
// post-quantum hybrid that Go prefers), so a load test pays the handshake a
// real fleet makes the server pay.
func DeviceTLSConfig(caFile string, cert *tls.Certificate) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
	if caFile != "" {
		pool, err := loadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return tc, nil
}

func loadCAFile(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("dpsclient: no certificate in %s", caFile)
	}
	return pool, nil
}

// NewDeviceTransport returns an HTTP/1.1 transport using tc that sends
// *.localhost names to loopback. With oneShot every request opens its own
// connection (and TLS handshake) and closes it afterwards.
func NewDeviceTransport(tc *tls.Config, oneShot bool) *http.Transport {
	return &http.Transport{
		DialContext:         netutil.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   oneShot,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// maxDeviceAnswer bounds a device API answer read into memory (DPS
// messages are at most 96 KB, spec §9).
const maxDeviceAnswer = 1 << 20

// device is one prepared Register or RegistrationStatus call.
type device struct {
	opts  DeviceOptions
	base  string // https://host[:port]
	token string // Authorization header; "" for X.509
	body  []byte // the register body
	hc    *http.Client
	own   bool // hc was built here: close its connections at the end
}

func newDevice(o DeviceOptions) (*device, error) {
	if err := o.prepare(); err != nil {
		return nil, err
	}
	d := &device{opts: o, base: "https://" + o.Endpoint, hc: o.HTTPClient}
	var err error
	if d.token, err = o.sasToken(time.Now()); err != nil {
		return nil, err
	}
	if d.body, err = json.Marshal(model.DeviceRegistration{RegistrationID: o.RegistrationID, Payload: o.Payload}); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrDeviceOptions, err)
	}
	if d.hc == nil {
		if d.hc, err = DeviceHTTPClient(o.CAFile, o.Certificate); err != nil {
			return nil, err
		}
		d.own = true
	}
	return d, nil
}

func (d *device) close() {
	if d.own {
		d.hc.CloseIdleConnections()
	}
}

// prepare fills defaults and checks o.
func (o *DeviceOptions) prepare() error {
	o.Endpoint = strings.TrimSuffix(strings.TrimPrefix(o.Endpoint, "https://"), "/")
	if o.Endpoint == "" {
		o.Endpoint = DefaultDeviceEndpoint
	}
	if o.APIVersion == "" {
		o.APIVersion = DeviceAPIVersion
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxThrottleRetries <= 0 {
		o.MaxThrottleRetries = DefaultMaxThrottleRetries
	}
	if o.UserAgent == "" {
		o.UserAgent = DeviceUserAgent
	}
	if o.RegistrationID == "" && o.Certificate != nil {
		o.RegistrationID = certCommonName(o.Certificate)
	}
	return o.validate()
}

func (o *DeviceOptions) validate() error {
	switch {
	case o.IDScope == "":
		return fmt.Errorf("%w: IDScope is required", ErrDeviceOptions)
	case o.RegistrationID == "":
		return fmt.Errorf("%w: RegistrationID is required", ErrDeviceOptions)
	case len(o.Payload) > 0 && !json.Valid(o.Payload):
		return fmt.Errorf("%w: Payload is not JSON", ErrDeviceOptions)
	}
	n := 0
	for _, set := range []bool{o.SymmetricKey != "", o.GroupKey != "", o.Certificate != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w: set only one of SymmetricKey, GroupKey and Certificate", ErrDeviceOptions)
	}
	if n == 0 && o.HTTPClient == nil {
		return fmt.Errorf("%w: no credential: set SymmetricKey, GroupKey or Certificate", ErrDeviceOptions)
	}
	return nil
}

// certCommonName returns the subject CN of the leaf, or "".
func certCommonName(c *tls.Certificate) string {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return ""
	}
	return leaf.Subject.CommonName
}

// sasToken signs "{scope}/registrations/{id}" (not URL-encoded, as the
// Node SDK does) for an hour; "" for certificate authentication.
func (o *DeviceOptions) sasToken(now time.Time) (string, error) {
	key := o.SymmetricKey
	if o.GroupKey != "" {
		var err error
		if key, err = sas.DeriveKey(o.GroupKey, o.RegistrationID); err != nil {
			return "", fmt.Errorf("%w: GroupKey: %v", ErrDeviceOptions, err)
		}
	}
	if key == "" {
		return "", nil
	}
	tok, err := sas.Build(o.IDScope+"/registrations/"+o.RegistrationID, key, deviceKeyName, now.Add(deviceTokenTTL))
	if err != nil {
		return "", fmt.Errorf("%w: SymmetricKey: %v", ErrDeviceOptions, err)
	}
	return tok, nil
}

func (d *device) regPath() string {
	return "/" + url.PathEscape(d.opts.IDScope) + "/registrations/" + url.PathEscape(d.opts.RegistrationID)
}

// register runs the register/poll loop of the Node SDK's state machine.
func (d *device) register(ctx context.Context) (*RegistrationResult, error) {
	res := &RegistrationResult{}
	st, wait, err := d.send(ctx, res, http.MethodPut, d.regPath()+"/register", d.body)
	for {
		if err != nil {
			return res, err
		}
		res.RegistrationOperationStatus = *st
		if done, err := finished(st); done {
			return res, err
		}
		if err := sleep(ctx, d.pollWait(wait)); err != nil {
			return res, err
		}
		if st.OperationID == "" { // "registering", or no operation to poll: register again
			st, wait, err = d.send(ctx, res, http.MethodPut, d.regPath()+"/register", d.body)
			continue
		}
		res.Polls++
		// The Node SDK sends "{}" on the poll GET; servers must tolerate it.
		st, wait, err = d.send(ctx, res, http.MethodGet, d.regPath()+"/operations/"+url.PathEscape(st.OperationID), []byte("{}"))
	}
}

// finished says whether st is terminal and, if so, the error to return.
func finished(st *RegistrationOperationStatus) (bool, error) {
	switch strings.ToLower(st.Status) {
	case model.OpStatusAssigned:
		return true, nil
	case model.OpStatusAssigning, "registering":
		return false, nil
	}
	e := &RegistrationError{Status: st.Status}
	if rs := st.RegistrationState; rs != nil {
		e.ErrorCode, e.Message = rs.ErrorCode, rs.ErrorMessage
	}
	if e.Status == "" {
		e.Message = "answer has no status"
	}
	return true, e
}

// pollWait is the wait before the next request given the Retry-After of
// the last answer (negative when absent).
func (d *device) pollWait(retryAfter time.Duration) time.Duration {
	switch {
	case d.opts.PollInterval > 0:
		return d.opts.PollInterval
	case retryAfter >= 0:
		return retryAfter
	}
	return DefaultPollInterval
}

// send is call for an answer that is a RegistrationOperationStatus.
func (d *device) send(ctx context.Context, res *RegistrationResult, method, path string, body []byte) (*RegistrationOperationStatus, time.Duration, error) {
	var st RegistrationOperationStatus
	ra, err := d.call(ctx, res, method, path, body, &st)
	if err != nil {
		return nil, 0, err
	}
	return &st, ra, nil
}

// call sends one request, waiting out 429 answers when RetryThrottled, and
// decodes a 2xx answer into out. It returns the answer's Retry-After
// (negative when absent).
func (d *device) call(ctx context.Context, res *RegistrationResult, method, path string, body []byte, out any) (time.Duration, error) {
	for {
		res.RoundTrips++
		ra, err := d.once(ctx, method, path, body, out)
		var de *DeviceError
		if err == nil || !d.opts.RetryThrottled || !errors.As(err, &de) ||
			de.StatusCode != http.StatusTooManyRequests || res.ThrottleRetries >= d.opts.MaxThrottleRetries {
			return ra, err
		}
		res.ThrottleRetries++
		wait := ra // the server's Retry-After wins over PollInterval here
		if wait < 0 {
			wait = d.pollWait(-1)
		}
		if err := sleep(ctx, wait); err != nil {
			return 0, err
		}
	}
}

// once is one HTTP round trip, bounded by RequestTimeout.
func (d *device) once(ctx context.Context, method, path string, body []byte, out any) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RequestTimeout)
	defer cancel()
	u := d.base + path + "?api-version=" + url.QueryEscape(d.opts.APIVersion)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrDeviceOptions, err)
	}
	h := req.Header
	h.Set("Accept", "application/json")
	h.Set("Content-Type", "application/json; charset=utf-8")
	if d.token != "" {
		h.Set("Authorization", d.token)
	}
	h.Set("Request-Id", uuid.NewString())
	h.Set("User-Agent", d.opts.UserAgent)
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDeviceAnswer))
	if err != nil {
		return 0, err
	}
	ra := parseRetryAfter(resp.Header.Get("Retry-After"))
	if resp.StatusCode/100 != 2 {
		return ra, deviceError(resp.StatusCode, ra, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return ra, fmt.Errorf("dpsclient: %s %s: answer %d (Content-Type %q) is not JSON: %w",
			method, path, resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	return ra, nil
}

func deviceError(status int, retryAfter time.Duration, body []byte) *DeviceError {
	e := &DeviceError{StatusCode: status, RetryAfter: max(retryAfter, 0)}
	if json.Unmarshal(body, e) != nil || e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// parseRetryAfter reads an integer number of seconds (spec §2.4), capped
// at 300 s like the C SDK; -1 when absent or not an integer.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return -1
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
