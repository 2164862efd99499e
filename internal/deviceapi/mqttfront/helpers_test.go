package mqttfront_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

const (
	testScope = "0ne00000001"
	registerT = "$dps/registrations/PUT/iotdps-register/?$rid="
	pollT     = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid="
	resPrefix = "$dps/registrations/res/"
)

// sasOf is the SAS token the fake engine accepts for a registration id.
func sasOf(regID string) string { return "SharedAccessSignature sr=x&sig=" + strings.ToLower(regID) }

// call is one engine call the fake saw.
type call struct {
	method string
	req    engine.Request
	opID   string
}

// fakeEngine authenticates scope testScope only: a SAS token sasOf(id),
// or a client certificate whose CN is the registration id. Register and
// OperationStatus answer with register / poll (default: assigned).
// Safe for concurrent use.
type fakeEngine struct {
	mu       sync.Mutex
	calls    []call
	authErr  error // returned by Authenticate when set
	register func(*engine.Request) (*engine.Result, error)
	poll     func(*engine.Request, string) (*engine.Result, error)
}

func (f *fakeEngine) record(method string, req *engine.Request, opID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method: method, req: *req, opID: opID})
}

func (f *fakeEngine) Calls(method string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if method == "" || c.method == method {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeEngine) check(req *engine.Request) error {
	f.mu.Lock()
	err := f.authErr
	f.mu.Unlock()
	switch {
	case err != nil:
		return err
	case !strings.EqualFold(req.IDScope, testScope):
		return apierr.New(apierr.CodeInstanceNotFound, "ID scope %s was not found.", req.IDScope)
	case req.SASToken != "":
		if req.SASToken != sasOf(req.RegistrationID) {
			return apierr.New(apierr.CodeUnauthorized, "Unauthorized")
		}
	case len(req.PeerCertificates) > 0:
		if req.PeerCertificates[0].Subject.CommonName != req.RegistrationID {
			return &apierr.Error{Status: 401, Code: 401002, Message: "Invalid certificate."}
		}
	default:
		return apierr.New(apierr.CodeUnauthorized, "No credential.")
	}
	return nil
}

func (f *fakeEngine) Authenticate(_ context.Context, req *engine.Request) error {
	f.record("Authenticate", req, "")
	return f.check(req)
}

func (f *fakeEngine) Register(_ context.Context, req *engine.Request) (*engine.Result, error) {
	f.record("Register", req, "")
	if err := f.check(req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	fn := f.register
	f.mu.Unlock()
	if fn != nil {
		return fn(req)
	}
	return assigned(req.RegistrationID, "op-"+req.RegistrationID), nil
}

func (f *fakeEngine) OperationStatus(_ context.Context, req *engine.Request, opID string) (*engine.Result, error) {
	f.record("OperationStatus", req, opID)
	if err := f.check(req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	fn := f.poll
	f.mu.Unlock()
	if fn != nil {
		return fn(req, opID)
	}
	return assigned(req.RegistrationID, opID), nil
}

func (f *fakeEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return nil, apierr.New(apierr.CodeRegistrationMissing, "not used over MQTT")
}

func (f *fakeEngine) set(fn func(f *fakeEngine)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func assigned(regID, opID string) *engine.Result {
	return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: opID, Status: model.OpStatusAssigned,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: regID, DeviceID: regID,
			AssignedHub: "hub1.localhost", Status: model.OpStatusAssigned, Substatus: model.SubstatusInitialAssignment}}}
}

func assigning(opID string, retry int) *engine.Result {
	return &engine.Result{RetryAfter: retry, Status: &model.RegistrationOperationStatus{OperationID: opID, Status: model.OpStatusAssigning}}
}

// testServer is a Server on a TLS listener and on an HTTPS server for
// WebSocket, with a CA that signs the server and device certificates.
type testServer struct {
	srv    *mqttfront.Server
	ca     *pki.CA
	addr   string // host:port of MQTT over TLS
	https  *httptest.Server
	served chan error // Serve's result
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("MQTTFRONT_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startServer starts a test server closed at the end of the test.
func startServer(t testing.TB, fe *fakeEngine, lim mqttfront.Limits) *testServer {
	t.Helper()
	ts := startServerNoCleanup(t, fe, lim)
	t.Cleanup(func() { ts.close(t) })
	return ts
}

// close closes the HTTPS server and the Server, and checks Serve's result.
func (ts *testServer) close(t testing.TB) {
	ts.https.Close()
	ts.srv.Close()
	if err := <-ts.served; err != mqttfront.ErrServerClosed {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
}

// startServerNoCleanup starts a test server; the caller closes it.
func startServerNoCleanup(t testing.TB, fe *fakeEngine, lim mqttfront.Limits) *testServer {
	t.Helper()
	ca, err := pki.NewCA("mqttfront test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv, err := mqttfront.New(mqttfront.Config{Engine: fe, TLS: tc, Log: testLogger(t), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mqttfront.IsWebSocketRequest(r) {
			srv.ServeWebSocket(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	hs.TLS = tc.Clone()
	hs.StartTLS()
	return &testServer{srv: srv, ca: ca, addr: ln.Addr().String(), https: hs, served: served}
}

// clientTLS trusts the test CA and presents cert when given.
func (ts *testServer) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: ts.ca.CertPool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// deviceCert is a client certificate with CN cn from the test CA.
func (ts *testServer) deviceCert(t testing.TB, cn string) *tls.Certificate {
	t.Helper()
	c, err := ts.ca.Issue([]string{cn}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// device is a paho client of the test server, subscribed or not.
type device struct {
	t    testing.TB
	c    paho.Client
	msgs chan paho.Message
	lost chan error
}

type devOpts struct {
	clientID, username, password string
	cert                         *tls.Certificate
	broker                       string // default ssl://addr
	keepAlive                    time.Duration
}

func (ts *testServer) usernameOf(regID string) string {
	return testScope + "/registrations/" + regID + "/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1"
}

// connect connects a device with a SAS token; o overrides the defaults.
// It returns the connect token's error and the device.
func (ts *testServer) connect(t testing.TB, regID string, o *devOpts) (*device, error) {
	t.Helper()
	if o == nil {
		o = &devOpts{}
	}
	if o.clientID == "" {
		o.clientID = regID
	}
	if o.username == "" {
		o.username = ts.usernameOf(regID)
	}
	if o.password == "" && o.cert == nil {
		o.password = sasOf(regID)
	}
	if o.password == "-" {
		o.password = ""
	}
	if o.broker == "" {
		o.broker = "ssl://" + ts.addr
	}
	if o.keepAlive == 0 {
		o.keepAlive = 180 * time.Second
	}
	d := &device{t: t, msgs: make(chan paho.Message, 64), lost: make(chan error, 1)}
	opts := paho.NewClientOptions().AddBroker(o.broker).SetClientID(o.clientID).SetUsername(o.username).
		SetPassword(o.password).SetTLSConfig(ts.clientTLS(o.cert)).SetCleanSession(true).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetKeepAlive(o.keepAlive).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { d.lost <- err }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { d.msgs <- m })
	d.c = paho.NewClient(opts)
	tok := d.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { d.c.Disconnect(50) })
	return d, nil
}

// mustConnect connects and subscribes to the response filter.
func (ts *testServer) mustConnect(t testing.TB, regID string, o *devOpts) *device {
	t.Helper()
	d, err := ts.connect(t, regID, o)
	if err != nil {
		t.Fatalf("connect %s: %v", regID, err)
	}
	d.subscribe(mqttfront.ResponseFilter, 1)
	return d
}

// subscribe subscribes and returns the granted QoS.
func (d *device) subscribe(filter string, qos byte) byte {
	d.t.Helper()
	tok := d.c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		d.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

func (d *device) publish(topic string, qos byte, payload string) {
	d.t.Helper()
	tok := d.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		d.t.Fatalf("publish %s: no PUBACK", topic)
	}
}

// next waits for the next message.
func (d *device) next() paho.Message {
	d.t.Helper()
	select {
	case m := <-d.msgs:
		return m
	case <-time.After(5 * time.Second):
		d.t.Fatal("no response within 5 s")
		return nil
	}
}

// none asserts that no message arrives within d.
func (d *device) none(wait time.Duration) {
	d.t.Helper()
	select {
	case m := <-d.msgs:
		d.t.Fatalf("unexpected message %s %s", m.Topic(), m.Payload())
	case <-time.After(wait):
	}
}

// waitLost waits for the connection to drop.
func (d *device) waitLost() {
	d.t.Helper()
	select {
	case <-d.lost:
	case <-time.After(5 * time.Second):
		d.t.Fatal("the server did not drop the connection")
	}
}

// decode parses a response payload.
func decode[T any](t testing.TB, m paho.Message) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.Payload(), &v); err != nil {
		t.Fatalf("payload of %s is not JSON: %q: %v", m.Topic(), m.Payload(), err)
	}
	return v
}

// wsURL is the WebSocket broker URL of path on the test HTTPS server.
func wsURL(ts *testServer, path string) string {
	return "wss://" + strings.TrimPrefix(ts.https.URL, "https://") + path
}
