package dpsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// scriptEngine authenticates tokens for its scope and registration ids,
// and answers Register and OperationStatus with scripted results, in
// order (then "assigned").
type scriptEngine struct {
	mu      sync.Mutex
	answers []func() (*engine.Result, error)
	polls   []string // operation ids polled
	bodies  []*model.DeviceRegistration
}

func (f *scriptEngine) Authenticate(_ context.Context, r *engine.Request) error {
	if !strings.HasPrefix(r.SASToken, "SharedAccessSignature sr="+testScope+"/registrations/"+r.RegistrationID+"&") {
		return apierr.New(apierr.CodeUnauthorized, "Unauthorized")
	}
	return nil
}

func (f *scriptEngine) next(r *engine.Request) (*engine.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.answers) == 0 {
		return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "op", Status: "assigned",
			RegistrationState: &model.DeviceRegistrationResult{RegistrationID: r.RegistrationID, AssignedHub: "hub1", Status: "assigned"}}}, nil
	}
	a := f.answers[0]
	f.answers = f.answers[1:]
	return a()
}

func (f *scriptEngine) Register(ctx context.Context, r *engine.Request) (*engine.Result, error) {
	if err := f.Authenticate(ctx, r); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, r.Body)
	f.mu.Unlock()
	return f.next(r)
}

func (f *scriptEngine) OperationStatus(ctx context.Context, r *engine.Request, opID string) (*engine.Result, error) {
	f.mu.Lock()
	f.polls = append(f.polls, opID)
	f.mu.Unlock()
	return f.next(r)
}

func (f *scriptEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return nil, nil
}

// startMQTT serves MQTT over TLS for fe and returns options to reach it.
func startMQTT(t *testing.T, fe *scriptEngine) DeviceOptions {
	t.Helper()
	ca, err := pki.NewCA("dpsclient mqtt test")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ca.Issue([]string{"localhost"}, time.Hour)
	srv, err := mqttfront.New(mqttfront.Config{Engine: fe, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return DeviceOptions{Protocol: ProtocolMQTT, Endpoint: "localhost:" + port, IDScope: testScope, RegistrationID: "dev1",
		SymmetricKey: testKey, TLSConfig: ca.ClientTLS(), PollInterval: 10 * time.Millisecond, RequestTimeout: 5 * time.Second}
}

func engineAssigning() (*engine.Result, error) {
	return &engine.Result{RetryAfter: 1, Status: &model.RegistrationOperationStatus{OperationID: "op-7", Status: "assigning"}}, nil
}

func TestRegisterMQTT(t *testing.T) {
	throttled := func() (*engine.Result, error) {
		e := apierr.New(apierr.CodeThrottled, "slow down")
		e.Header = http.Header{"Retry-After": {"1"}}
		return nil, e
	}
	failed := func() (*engine.Result, error) {
		return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "op", Status: "failed",
			RegistrationState: &model.DeviceRegistrationResult{RegistrationID: "dev1", Status: "failed", ErrorCode: 400210, ErrorMessage: "webhook"}}}, nil
	}
	tests := []struct {
		name                        string
		answers                     []func() (*engine.Result, error)
		mutate                      func(*DeviceOptions)
		wantErr                     error
		roundTrips, polls, throttle int
	}{
		{name: "fast path", roundTrips: 1},
		{name: "slow path", answers: []func() (*engine.Result, error){engineAssigning, engineAssigning}, roundTrips: 3, polls: 2},
		{name: "throttled, retried", answers: []func() (*engine.Result, error){throttled}, mutate: func(o *DeviceOptions) { o.RetryThrottled = true },
			roundTrips: 2, throttle: 1},
		{name: "throttled", answers: []func() (*engine.Result, error){throttled}, wantErr: ErrThrottled, roundTrips: 1},
		{name: "failed", answers: []func() (*engine.Result, error){failed}, wantErr: ErrRegistrationFailed, roundTrips: 1},
		{name: "wrong key", mutate: func(o *DeviceOptions) { o.IDScope = "0ne00000BAD" }, wantErr: ErrDeviceUnauthorized},
		{name: "group key and payload", mutate: func(o *DeviceOptions) {
			o.SymmetricKey, o.GroupKey, o.Payload = "", testKey, []byte(`{"modelId":"dtmi:x;1"}`)
		}, roundTrips: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &scriptEngine{answers: tt.answers}
			opts := startMQTT(t, fe)
			if tt.mutate != nil {
				tt.mutate(&opts)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := Register(ctx, opts)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Register = %v, want %v", err, tt.wantErr)
			}
			if res == nil {
				t.Fatal("nil result")
			}
			if res.RoundTrips != tt.roundTrips || res.Polls != tt.polls || res.ThrottleRetries != tt.throttle {
				t.Errorf("round trips %d, polls %d, throttle retries %d; want %d, %d, %d",
					res.RoundTrips, res.Polls, res.ThrottleRetries, tt.roundTrips, tt.polls, tt.throttle)
			}
			if tt.wantErr == nil && res.State().AssignedHub != "hub1" {
				t.Errorf("state = %+v", res.State())
			}
			for _, op := range fe.polls {
				if op != "op-7" {
					t.Errorf("polled %q, want op-7", op)
				}
			}
			if opts.Payload != nil && (len(fe.bodies) == 0 || string(fe.bodies[0].Payload) != string(opts.Payload)) {
				t.Errorf("register bodies %+v, want the payload", fe.bodies)
			}
		})
	}
}

func TestParseMQTTResponse(t *testing.T) {
	for _, tt := range []struct {
		topic  string
		status int
		rid    string
		ra     time.Duration
		ok     bool
	}{
		{"$dps/registrations/res/202/?$rid=abc&retry-after=3", 202, "abc", 3 * time.Second, true},
		{"$dps/registrations/res/200/?$rid=abc", 200, "abc", -1, true},
		{"$dps/registrations/res/429/?$rid=1&Retry-After=x", 429, "1", -1, true},
		{"$dps/registrations/res/200/?retry-after=1", 0, "", 0, false},
		{"devices/x", 0, "", 0, false},
	} {
		status, rid, ra, ok := parseMQTTResponse(tt.topic)
		if ok != tt.ok || ok && (status != tt.status || rid != tt.rid || ra != tt.ra) {
			t.Errorf("parseMQTTResponse(%q) = %d %q %v %v", tt.topic, status, rid, ra, ok)
		}
	}
}
