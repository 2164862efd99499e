package forward

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/pkitest"
	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	regionA = "westeurope"  // primary of the test instances
	regionB = "northeurope" // the forwarding side
	domain  = "dps.test"
)

// fakeEngine records requests and answers by registration id.
type fakeEngine struct {
	region string
	mu     sync.Mutex
	got    []*engine.Request
	ops    []string
}

func (f *fakeEngine) record(req *engine.Request, op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	f.ops = append(f.ops, op)
}

func (f *fakeEngine) calls() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.got) }

func (f *fakeEngine) last() (*engine.Request, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[len(f.got)-1], f.ops[len(f.ops)-1]
}

func (f *fakeEngine) answer(req *engine.Request) error {
	switch req.RegistrationID {
	case "unauth":
		return apierr.New(apierr.CodeUnauthorized, "Authentication failed for %s.", req.RegistrationID)
	case "throttled":
		e := apierr.New(apierr.CodeThrottled, "Too many requests; retry after 7 seconds.")
		e.Header = http.Header{"Retry-After": []string{"7"}}
		return e
	case "missing":
		return apierr.New(apierr.CodeInstanceNotFound, "ID scope %s was not found.", req.IDScope)
	}
	return nil
}

func (f *fakeEngine) Authenticate(_ context.Context, req *engine.Request) error {
	f.record(req, "auth")
	return f.answer(req)
}

func (f *fakeEngine) Register(_ context.Context, req *engine.Request) (*engine.Result, error) {
	f.record(req, "register")
	if err := f.answer(req); err != nil {
		return nil, err
	}
	return &engine.Result{RetryAfter: 3, Status: &model.RegistrationOperationStatus{
		OperationID: "op-" + f.region, Status: model.OpStatusAssigning}}, nil
}

func (f *fakeEngine) OperationStatus(_ context.Context, req *engine.Request, opID string) (*engine.Result, error) {
	f.record(req, "operation:"+opID)
	if err := f.answer(req); err != nil {
		return nil, err
	}
	return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: opID, Status: model.OpStatusAssigned,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: req.RegistrationID, AssignedHub: "hub-" + f.region}}}, nil
}

func (f *fakeEngine) RegistrationStatus(_ context.Context, req *engine.Request) (*model.DeviceRegistrationResult, error) {
	f.record(req, "status")
	if err := f.answer(req); err != nil {
		return nil, err
	}
	return &model.DeviceRegistrationResult{RegistrationID: req.RegistrationID, AssignedHub: "hub-" + f.region}, nil
}

// side is one region of the test world.
type side struct {
	st      *store.Store
	eng     *fakeEngine
	dev     *Device
	svc     *Service
	svcSeen chan *http.Request // requests the local service handler served
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// world starts two regions, each with a store, a fake engine, a fake
// service handler and a peer listener serving Device.Mount and
// Service.Mount.
func world(t *testing.T) (a, b *side) {
	t.Helper()
	ca, err := pki.NewCA("forward test")
	if err != nil {
		t.Fatal(err)
	}
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	urls := map[string]string{regionA: "https://" + lnA.Addr().String(), regionB: "https://" + lnB.Addr().String()}
	mk := func(region string, ln net.Listener) *side {
		cert, err := ca.IssueRegion(peer.RegionURI(region), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		pc := peer.Config{Region: region, Certificate: cert, Roots: ca.CertPool(), Peers: map[string]string{}}
		for r, u := range urls {
			if r != region {
				pc.Peers[r] = u
			}
		}
		cl, err := peer.NewClient(pc)
		if err != nil {
			t.Fatal(err)
		}
		s := &side{st: storetest.New(t, region), eng: &fakeEngine{region: region}, logs: &syncBuffer{},
			svcSeen: make(chan *http.Request, 16)}
		cfg := Config{Store: s.st, Peer: cl, Log: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		if s.dev, err = New(s.eng, cfg); err != nil {
			t.Fatal(err)
		}
		local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			s.svcSeen <- r
			w.Header().Set("X-Served-By", region)
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		})
		if s.svc, err = NewService(local, domain, cfg); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		s.dev.Mount(mux)
		s.svc.Mount(mux)
		srv := &http.Server{TLSConfig: pc.ServerTLS(), Handler: mux, ErrorLog: nil}
		go srv.ServeTLS(ln, "", "")
		t.Cleanup(func() { srv.Close() })
		return s
	}
	return mk(regionA, lnA), mk(regionB, lnB)
}

// instance writes a directory entry and scope key for name in st.
func instance(t *testing.T, st *store.Store, name, scope, primary, role string) {
	t.Helper()
	d := model.DirEntry{Name: name, IDScope: scope, Primary: primary, Secondary: regionB, Epoch: 1, DREnabled: true, Role: role}
	if err := st.CreateInstance(context.Background(), d, &model.Instance{Name: name, IDScope: scope}); err != nil {
		t.Fatal(err)
	}
}

// revision is the store's current etcd revision: unchanged means nothing
// was written.
func revision(t *testing.T, st *store.Store) int64 {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func apiErr(t *testing.T, err error) *apierr.Error {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *apierr.Error", err)
	}
	return e
}

func TestDeviceForwarding(t *testing.T) {
	a, b := world(t)
	const scope, canaryScope = "0ne0000AAAA", "0ne0000CCCC"
	instance(t, a.st, "dr-inst", scope, regionA, model.RolePrimary)
	instance(t, b.st, "dr-inst", scope, regionA, model.RoleSecondary)
	instance(t, a.st, "canary-inst", canaryScope, regionA, model.RolePrimary) // residency: unknown in B
	ctx := context.Background()
	client := pkitest.NewCA(t, "device root")
	leaf, _ := x509.ParseCertificate(client.IssueDER(t, "canary-device-x509"))
	before := revision(t, b.st)

	t.Run("secondary forwards to the primary's engine with the same fields", func(t *testing.T) {
		req := &engine.Request{IDScope: scope, RegistrationID: "canary-device-1", SASToken: "SharedAccessSignature sr=canary-sas",
			PeerCertificates: []*x509.Certificate{leaf, client.Cert}, Transport: "mqtt-ws", ClientAddr: "192.0.2.7",
			Body: &model.DeviceRegistration{RegistrationID: "canary-device-1", Payload: json.RawMessage(`{ "canary" : [1, 2] }`)}}
		res, err := b.dev.Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.RetryAfter != 3 || res.Status.OperationID != "op-"+regionA || res.Status.Status != model.OpStatusAssigning {
			t.Errorf("result %+v %+v, want the primary's", res, res.Status)
		}
		got, op := a.eng.last()
		if op != "register" || got.IDScope != scope || got.RegistrationID != req.RegistrationID || got.SASToken != req.SASToken ||
			got.Transport != "mqtt-ws" || got.ClientAddr != "192.0.2.7" {
			t.Errorf("primary got %q %+v, want the same fields", op, got)
		}
		if len(got.PeerCertificates) != 2 || !bytes.Equal(got.PeerCertificates[0].Raw, leaf.Raw) || !bytes.Equal(got.PeerCertificates[1].Raw, client.Cert.Raw) {
			t.Errorf("primary got %d certificates, not the same chain", len(got.PeerCertificates))
		}
		if got.Body == nil || got.Body.RegistrationID != "canary-device-1" || string(got.Payload()) != `{ "canary" : [1, 2] }` {
			t.Errorf("primary got body %+v, want the same bytes", got.Body)
		}
		if b.eng.calls() != 0 {
			t.Errorf("the secondary's engine was called %d times", b.eng.calls())
		}
	})
	t.Run("operation, status and auth are forwarded", func(t *testing.T) {
		req := &engine.Request{IDScope: scope, RegistrationID: "canary-device-2", SASToken: "t"}
		res, err := b.dev.OperationStatus(ctx, req, "canary-op")
		if err != nil || res.Status.OperationID != "canary-op" || res.Status.RegistrationState.AssignedHub != "hub-"+regionA {
			t.Fatalf("operation = %+v, %v", res, err)
		}
		st, err := b.dev.RegistrationStatus(ctx, req)
		if err != nil || st.AssignedHub != "hub-"+regionA {
			t.Fatalf("status = %+v, %v", st, err)
		}
		if err := b.dev.Authenticate(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, op := a.eng.last(); op != "auth" {
			t.Errorf("last primary op %q, want auth", op)
		}
	})
	t.Run("errors are reproduced", func(t *testing.T) {
		for _, tc := range []struct {
			id           string
			status, code int
			retryAfter   string
		}{
			{"unauth", 401, apierr.CodeUnauthorized, ""},
			{"throttled", 429, apierr.CodeThrottled, "7"},
			{"missing", 404, apierr.CodeInstanceNotFound, ""},
		} {
			_, err := b.dev.Register(ctx, &engine.Request{IDScope: scope, RegistrationID: tc.id, SASToken: "t"})
			want := apiErr(t, a.eng.answer(&engine.Request{IDScope: scope, RegistrationID: tc.id}))
			e := apiErr(t, err)
			if e.Status != tc.status || e.Code != tc.code || e.Message != want.Message || e.Header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("%s: got %d %d %q Retry-After %q, want %d %d %q %q", tc.id, e.Status, e.Code, e.Message,
					e.Header.Get("Retry-After"), tc.status, tc.code, want.Message, tc.retryAfter)
			}
		}
	})
	t.Run("an unknown scope is located through the peers and cached", func(t *testing.T) {
		rounds := b.dev.loc.rounds.Load()
		for range 3 {
			if _, err := b.dev.Register(ctx, &engine.Request{IDScope: canaryScope, RegistrationID: "canary-device-3", SASToken: "t"}); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := a.eng.last(); got.IDScope != canaryScope {
			t.Errorf("primary got scope %q", got.IDScope)
		}
		if n := b.dev.loc.rounds.Load() - rounds; n != 1 {
			t.Errorf("%d locate rounds for 3 requests, want 1 (cached)", n)
		}
	})
	t.Run("nobody has the scope: the local engine's 404", func(t *testing.T) {
		_, err := b.dev.Register(ctx, &engine.Request{IDScope: "0ne00000000", RegistrationID: "missing", SASToken: "t"})
		if e := apiErr(t, err); e.Status != 404 || e.Code != apierr.CodeInstanceNotFound {
			t.Errorf("got %v, want 404 instance not found", err)
		}
		if b.eng.calls() != 1 {
			t.Errorf("the local engine answered %d times, want 1", b.eng.calls())
		}
	})
	t.Run("nothing stored or logged on the forwarding side", func(t *testing.T) {
		if after := revision(t, b.st); after != before {
			t.Errorf("the forwarding store moved from revision %d to %d", before, after)
		}
		logs := b.logs.String()
		if !strings.Contains(logs, "peer="+regionA) {
			t.Errorf("no forwarding log line names the region:\n%s", logs)
		}
		for _, canary := range []string{"canary", strings.ToLower(canaryScope), canaryScope, scope, "dr-inst"} {
			if strings.Contains(logs, canary) {
				t.Errorf("the forwarding side logged %q:\n%s", canary, logs)
			}
		}
	})
}

func TestDeviceFencedAndLoops(t *testing.T) {
	a, b := world(t)
	ctx := context.Background()
	instance(t, b.st, "fenced-here", "0ne0000FFF1", regionB, model.RoleFenced)
	instance(t, a.st, "fenced-there", "0ne0000FFF2", regionA, model.RoleFenced)
	// Both regions think the other is primary: no forwarding loop, 503.
	instance(t, a.st, "split", "0ne0000FFF3", regionB, model.RoleSecondary)
	instance(t, b.st, "split", "0ne0000FFF3", regionA, model.RoleSecondary)
	for _, scope := range []string{"0ne0000FFF1", "0ne0000FFF2", "0ne0000FFF3"} {
		_, err := b.dev.Register(ctx, &engine.Request{IDScope: scope, RegistrationID: "d", SASToken: "t"})
		e := apiErr(t, err)
		if e.Status != http.StatusServiceUnavailable || e.Code != apierr.CodeUnavailable || e.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: got %d %d Retry-After %q, want 503 retryable", scope, e.Status, e.Code, e.Header.Get("Retry-After"))
		}
	}
	if a.eng.calls()+b.eng.calls() != 0 {
		t.Errorf("an engine answered a request for a fenced or secondary instance")
	}
}

func TestPeerEndpointsRequireARegion(t *testing.T) {
	a, _ := world(t)
	mux := http.NewServeMux()
	a.dev.Mount(mux)
	a.svc.Mount(mux)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/opendps/peer/locate/x"},
		{"POST", "/opendps/peer/device/register"},
		{"POST", "/opendps/peer/service/enrollments/x"},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}")))
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s %s without a region certificate: %d, want 403", tc.method, tc.path, rec.Code)
		}
	}
}

func TestServiceProxy(t *testing.T) {
	a, b := world(t)
	instance(t, a.st, "dr-svc", "0ne0000BBB1", regionA, model.RolePrimary)
	instance(t, b.st, "dr-svc", "0ne0000BBB1", regionA, model.RoleSecondary)
	instance(t, a.st, "res-svc", "0ne0000BBB2", regionA, model.RolePrimary)
	for _, tc := range []struct{ host, wantRegion string }{
		{"dr-svc." + domain + ":8444", regionA}, // secondary here
		{"RES-SVC." + domain, regionA},          // located through the peers
		{"nobody." + domain, regionB},           // unknown everywhere: local 404
		{"dr-svc.other.example", regionB},       // not a service host
	} {
		body := `{"registrationId":"e1","attestation":{"type":"symmetricKey"}}`
		req := httptest.NewRequest("PUT", "/enrollments/e%2F1?api-version=2021-10-01", strings.NewReader(body))
		req.Host = tc.host
		req.Header.Set("Authorization", "SharedAccessSignature sr=x&sig=y")
		rec := httptest.NewRecorder()
		b.svc.ServeHTTP(rec, req)
		if got := rec.Header().Get("X-Served-By"); got != tc.wantRegion || rec.Code != http.StatusCreated || rec.Body.String() != body {
			t.Errorf("%s: served by %q, %d %q; want %s, 201 and the body", tc.host, got, rec.Code, rec.Body.String(), tc.wantRegion)
			continue
		}
		seen := <-map[string]chan *http.Request{regionA: a.svcSeen, regionB: b.svcSeen}[tc.wantRegion]
		if seen.Host != tc.host || seen.URL.EscapedPath() != "/enrollments/e%2F1" || seen.URL.RawQuery != "api-version=2021-10-01" ||
			seen.Header.Get("Authorization") != "SharedAccessSignature sr=x&sig=y" || seen.Method != "PUT" {
			t.Errorf("%s: the serving handler saw %s %s%s?%s auth %q", tc.host, seen.Method, seen.Host, seen.URL.EscapedPath(),
				seen.URL.RawQuery, seen.Header.Get("Authorization"))
		}
	}
}

// TestServiceProxyToASecondary: a region that receives a proxied service
// request for an instance it is not primary of (it was demoted after the
// sender cached its entry; its copy may be mid base copy) answers 503
// retryable instead of serving its secondary copy.
func TestServiceProxyToASecondary(t *testing.T) {
	a, b := world(t)
	instance(t, b.st, "demoted", "0ne0000CCC1", regionA, model.RoleSecondary) // b still thinks a is primary
	instance(t, a.st, "demoted", "0ne0000CCC1", regionB, model.RoleSecondary) // a was demoted meanwhile
	for _, method := range []string{"GET", "PUT"} {
		req := httptest.NewRequest(method, "/registrations/d1?api-version=2021-10-01", strings.NewReader(`{}`))
		req.Host = "demoted." + domain
		rec := httptest.NewRecorder()
		b.svc.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("%s through a demoted region: %d Retry-After %q %s, want 503 retryable", method, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
	select {
	case r := <-a.svcSeen:
		t.Errorf("the demoted region served %s %s from its secondary copy", r.Method, r.URL)
	case r := <-b.svcSeen:
		t.Errorf("the secondary region served %s %s itself", r.Method, r.URL)
	default:
	}
}
