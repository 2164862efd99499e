package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/internal/node"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// transport is one way the Node device SDK reaches opendps
// (test/node/device.test.js reads its name from DPS_TRANSPORT).
type transport struct {
	name string // DPS_TRANSPORT: http, mqtt or mqttws
	// suffix ends every registration id, group id and CA name of the
	// transport's suite ("" for https: the original ids).
	suffix string
	// deadHub: the suite stops a hub (HTTPS only: the engine then avoids
	// the hub for a few seconds, which would disturb a suite run after it).
	deadHub bool
}

// transports run in this order: HTTPS last, because of its dead hub.
var transports = []transport{
	{name: "mqtt", suffix: "-mqtt"},
	{name: "mqttws", suffix: "-mqttws"},
	{name: "http", deadHub: true},
}

// nodeEnv is the environment of device.test.js for one transport.
func (e *deployment) nodeEnv(t *testing.T, tr transport, s *deviceSuite) map[string]string {
	env := map[string]string{
		"NODE_EXTRA_CA_CERTS": e.conn.CACertificate,
		"DEVICE_E2E":          mustJSON(t, s),
		"DPS_TRANSPORT":       tr.name,
	}
	if tr.name == "mqttws" { // MqttWs only knows port 443 (lib/shim.js)
		_, port, _ := net.SplitHostPort(e.conn.DeviceEndpoint)
		env["OPENDPS_WSS_PORT"] = port
	}
	return env
}

// TestDeviceRegistration registers devices with the official Node device
// SDK against a whole dev deployment, over each transport (HTTPS, MQTT
// over TLS, MQTT over WebSocket; issues "Device registration over HTTPS"
// and "over MQTT"): symmetric keys (individual, group-derived), X.509
// (individual, signing certificate, verified CA), deviceId, disabled
// enrollments, refusals, the four reprovisioning policies, registration
// deletion, custom allocation (webhook), the slow path, the fast path and
// (HTTPS) a dead hub. test/node/device.test.js checks each answer and
// asks the Go harness to check the hub simulator and the registration
// record. The transports share the deployment, each with enrollments of
// its own. First, devices connected over MQTT at the same time check that
// none receives another's responses.
func TestDeviceRegistration(t *testing.T) {
	nodetest.Dir(t)
	ctx := context.Background()
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()

	wh := startWebhook(t, "e2e-function-key")
	harness := startHarness(t, e, wh)
	suites := make([]*deviceSuite, len(transports))
	for i, tr := range transports {
		suites[i] = e.prepareDevices(ctx, wh.URL(), tr)
		suites[i].Harness = harness
	}
	isolated := []symCred{e.symEnrollment(ctx, "mqtt-iso-a", nil), e.symEnrollment(ctx, "mqtt-iso-b", nil), e.symEnrollment(ctx, "mqtt-iso-c", nil)}
	t.Run("mqtt isolation", func(t *testing.T) { e.checkMQTTIsolation(t, isolated) })
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			if tr.name == "http" {
				t.Run("raw refusals", func(t *testing.T) { e.checkRawRefusals(t, suites[i]) })
			}
			nodetest.Run(t, "device.test.js", e.nodeEnv(t, tr, suites[i]))
		})
	}
}

// TestDeviceThrottling starts a deployment allowing 15 registrations per
// minute per instance (one every 4 s once the burst is used). Over HTTPS
// the registration past the limit is answered 429 with an integer
// Retry-After and a 429xxx errorCode, which the Node SDK reports as a
// ThrottlingError (no retry, §2.7); over MQTT and MQTT over WebSocket it is
// answered res/429/?$rid=..&retry-after=N, which the SDK honours: it
// registers again N seconds later and succeeds.
func TestDeviceThrottling(t *testing.T) {
	nodetest.Dir(t)
	ctx := context.Background()
	e := startDeploymentWith(t, devenv.Options{DataDir: t.TempDir(), LogLevel: "error",
		Tune: func(c *node.Config) { c.Throttle.RegistrationsPerMinute = 15 }})
	defer e.d.Close()
	suite := e.suite("throttle")
	suite.Throttle = e.symEnrollment(ctx, "throttle-01", nil)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			nodetest.Run(t, "device.test.js", e.nodeEnv(t, tr, suite))
		})
	}
	// Registrations past the limit, sent raw, are 429 in the DPS shape.
	d := suite.Throttle
	var status int
	var hdr http.Header
	var body rawAnswer
	for range 30 {
		status, hdr, body = e.rawRegister(t, suite.IDScope, d.RegID, e.deviceToken(t, suite.IDScope, d, time.Hour))
		if status != http.StatusAccepted {
			break
		}
	}
	if status != http.StatusTooManyRequests || body.ErrorCode/1000 != 429 {
		t.Fatalf("register over the limit = %d %+v, want 429 and errorCode 429xxx", status, body)
	}
	checkErrorShape(t, "throttled", status, body)
	if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After = %q, want an integer number of seconds in 1..60", hdr.Get("Retry-After"))
	}
}

// startDeploymentWith is startDeployment with options (node tuning).
func startDeploymentWith(t *testing.T, opts devenv.Options) *deployment {
	t.Helper()
	d, err := devenv.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dpsclient.LoadConnection(d.ConnectionPath)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	hc, err := dpsclient.HTTPClient(conn.CACertificate)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	svc, err := dpsclient.NewService(conn.ServiceConnectionString, hc)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return &deployment{t: t, dir: opts.DataDir, d: d, conn: conn, hc: hc, svc: svc,
		ctl: dpsclient.NewControl(conn.ControlEndpoint, conn.OperatorToken, hc)}
}

// checkRawRefusals sends register requests the SDK cannot produce: an
// expired SAS token, and an unknown ID scope; a valid token from the same
// code path shows that the refusals are about what they claim.
func (e *deployment) checkRawRefusals(t *testing.T, s *deviceSuite) {
	d := s.Raw
	expired := e.deviceToken(t, s.IDScope, d, -time.Hour)
	status, _, body := e.rawRegister(t, s.IDScope, d.RegID, expired)
	if status != http.StatusUnauthorized || body.ErrorCode != 401000 {
		t.Errorf("expired token: %d %+v, want 401 with errorCode 401000", status, body)
	}
	checkErrorShape(t, "expired token", status, body)

	valid := e.deviceToken(t, s.IDScope, d, time.Hour)
	status, _, body = e.rawRegister(t, "0ne0000FFFF", d.RegID, valid)
	if status != http.StatusNotFound || body.ErrorCode != 404204 {
		t.Errorf("unknown ID scope: %d %+v, want 404 with errorCode 404204", status, body)
	}
	checkErrorShape(t, "unknown ID scope", status, body)

	status, _, body = e.rawRegister(t, s.IDScope, d.RegID, valid)
	if status != http.StatusAccepted || body.Status != "assigned" {
		t.Errorf("valid token: %d %+v, want 202 assigned", status, body)
	}
}

// rawAnswer holds both shapes a register call can answer.
type rawAnswer struct {
	// RegistrationOperationStatus
	OperationID string `json:"operationId"`
	Status      string `json:"status"`
	// ProvisioningServiceErrorDetails
	ErrorCode    int    `json:"errorCode"`
	TrackingID   string `json:"trackingId"`
	Message      string `json:"message"`
	TimestampUTC string `json:"timestampUtc"`
	contentType  string
}

// rawRegister PUTs a register request as the Node SDK does (§2.8).
func (e *deployment) rawRegister(t *testing.T, scope, regID, token string) (int, http.Header, rawAnswer) {
	t.Helper()
	u := "https://" + e.conn.DeviceEndpoint + "/" + scope + "/registrations/" + regID + "/register?api-version=2019-03-31"
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader([]byte(`{"registrationId":"`+regID+`"}`)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", token)
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var a rawAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Errorf("register answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	a.contentType = resp.Header.Get("Content-Type")
	return resp.StatusCode, resp.Header, a
}

// deviceToken signs a device SAS token the way the Node SDK does (sr not
// URL-encoded), expiring after ttl (negative: already expired).
func (e *deployment) deviceToken(t *testing.T, scope string, d symCred, ttl time.Duration) string {
	t.Helper()
	tok, err := sas.Build(scope+"/registrations/"+d.RegID, d.PrimaryKey, "registration", time.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkErrorShape checks a DPS error body (spec/dps-protocol.md §2.7).
func checkErrorShape(t *testing.T, what string, status int, a rawAnswer) {
	t.Helper()
	if a.ErrorCode/1000 != status {
		t.Errorf("%s: errorCode %d does not carry HTTP status %d", what, a.ErrorCode, status)
	}
	if a.TrackingID == "" || a.Message == "" {
		t.Errorf("%s: error body lacks trackingId or message: %+v", what, a)
	}
	if _, err := time.Parse(time.RFC3339Nano, a.TimestampUTC); err != nil {
		t.Errorf("%s: timestampUtc %q: %v", what, a.TimestampUTC, err)
	}
	if !strings.Contains(a.contentType, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, a.contentType)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
