package obs

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeEngine answers what its fields say.
type fakeEngine struct {
	status string // Register's and OperationStatus's status
	err    error
}

func (f *fakeEngine) result() (*engine.Result, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "op", Status: f.status}}, nil
}
func (f *fakeEngine) Authenticate(context.Context, *engine.Request) error { return f.err }
func (f *fakeEngine) Register(context.Context, *engine.Request) (*engine.Result, error) {
	return f.result()
}
func (f *fakeEngine) OperationStatus(context.Context, *engine.Request, string) (*engine.Result, error) {
	return f.result()
}
func (f *fakeEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return &model.DeviceRegistrationResult{}, f.err
}

func value(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	switch v := c.(type) {
	case *prometheus.CounterVec:
		if err := v.WithLabelValues(labels...).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	case *prometheus.HistogramVec:
		if err := v.WithLabelValues(labels...).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("collector %T", c)
	return 0
}

// TestDeviceResults: each engine answer maps to its result label, and
// "assigning" is counted only when a poll returns the terminal status.
func TestDeviceResults(t *testing.T) {
	m := metrics()
	ctx := context.Background()
	sym := &engine.Request{Transport: "https", SASToken: "SharedAccessSignature sr=x"}
	x5 := &engine.Request{Transport: "mqtt-ws", PeerCertificates: []*x509.Certificate{{}}}
	thrRegister := value(t, m.throttled, "device", "https", OpRegister)
	for _, c := range []struct {
		name   string
		req    *engine.Request
		f      *fakeEngine
		result string
		code   string // opendps_device_requests_total's code
	}{
		{"assigned", sym, &fakeEngine{status: model.OpStatusAssigned}, "assigned", "202"},
		{"failed", x5, &fakeEngine{status: model.OpStatusFailed}, "failed", "202"},
		{"disabled", sym, &fakeEngine{status: model.OpStatusDisabled}, "disabled", "202"},
		{"401", sym, &fakeEngine{err: apierr.New(apierr.CodeUnauthorized, "no")}, ResultUnauthorized, "401"},
		{"404", x5, &fakeEngine{err: apierr.New(apierr.CodeInstanceNotFound, "no")}, ResultNotFound, "404"},
		{"429", sym, &fakeEngine{err: apierr.New(apierr.CodeThrottled, "slow down")}, ResultThrottled, "429"},
		{"400", sym, &fakeEngine{err: apierr.New(apierr.CodeBadArgument, "bad")}, ResultBadRequest, "400"},
		{"500", sym, &fakeEngine{err: context.DeadlineExceeded}, ResultError, "500"},
	} {
		proto, att := protocol(c.req), attestation(c.req)
		before := value(t, m.registrations, c.result, proto, att)
		reqs := value(t, m.deviceRequests, proto, OpRegister, c.code)
		Device(c.f).Register(ctx, c.req)
		if got := value(t, m.registrations, c.result, proto, att) - before; got != 1 {
			t.Errorf("%s: registrations{%s,%s,%s} += %v, want 1", c.name, c.result, proto, att, got)
		}
		if got := value(t, m.deviceRequests, proto, OpRegister, c.code) - reqs; got != 1 {
			t.Errorf("%s: device_requests{%s,register,%s} += %v, want 1", c.name, proto, c.code, got)
		}
	}
	if got := value(t, m.throttled, "device", "https", OpRegister) - thrRegister; got != 1 {
		t.Errorf("throttled{device,https,register} += %v, want 1 (the 429 case alone)", got)
	}

	// Assigning, then a poll that assigns: one registration.
	f := &fakeEngine{status: model.OpStatusAssigning}
	d := Device(f)
	before := value(t, m.registrations, "assigned", "https", "symmetricKey")
	polls := value(t, m.deviceLatency, "https", OpOperationStatus)
	d.Register(ctx, sym)
	d.OperationStatus(ctx, sym, "op")
	f.status = model.OpStatusAssigned
	d.OperationStatus(ctx, sym, "op")
	if got := value(t, m.registrations, "assigned", "https", "symmetricKey") - before; got != 1 {
		t.Errorf("assigning then assigned: registrations += %v, want 1", got)
	}
	if got := value(t, m.deviceLatency, "https", OpOperationStatus) - polls; got != 2 {
		t.Errorf("operation_status latency count += %v, want 2", got)
	}
	if got := protocol(&engine.Request{Transport: "0ne00000001"}); got != "unknown" {
		t.Errorf("protocol of an odd transport = %q, want unknown", got)
	}
}

// TestHTTPMiddleware: HTTP counts by listener, method and code, times the
// request, counts a 429 as throttled, and gives the request an id.
func TestHTTPMiddleware(t *testing.T) {
	m := metrics()
	var seen string
	h := HTTP("test", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = apierr.RequestID(r.Context())
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	before := value(t, m.httpRequests, "test", "GET", "429")
	thr := value(t, m.throttled, "test", "https", "")
	lat := value(t, m.httpLatency, "test", "GET")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if got := value(t, m.httpRequests, "test", "GET", "429") - before; got != 1 {
		t.Errorf("requests{test,GET,429} += %v, want 1", got)
	}
	if got := value(t, m.throttled, "test", "https", "") - thr; got != 1 {
		t.Errorf("throttled{test} += %v, want 1", got)
	}
	if got := value(t, m.httpLatency, "test", "GET") - lat; got != 1 {
		t.Errorf("latency count += %v, want 1", got)
	}
	if seen == "" || rec.Header().Get("x-ms-request-id") != seen {
		t.Errorf("request id %q, header %q", seen, rec.Header().Get("x-ms-request-id"))
	}
	if got := method("BREW"); got != "other" {
		t.Errorf("method(BREW) = %q", got)
	}
}
