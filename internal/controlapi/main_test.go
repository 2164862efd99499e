package controlapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
)

const testToken = "operator-secret-token"

// shared is one embedded etcd shared by the tests of this package.
var shared storetest.Shared

func TestMain(m *testing.M) { shared.Main(m) }

// env is a control API on an httptest server with a client.
type env struct {
	t   *testing.T
	srv *httptest.Server
	ctl *dpsclient.Control
}

// failingHubs makes the link-time check fail for hosts containing "bad".
var failingHubs = instance.HubCheckFunc(func(_ context.Context, cs string) error {
	if strings.Contains(cs, "bad") {
		return errors.New("hub: GET /devices/x: 401 Unauthorized: wrong key")
	}
	return nil
})

func newEnv(t *testing.T) *env {
	t.Helper()
	cat := regions.Builtin()
	m, err := instance.New(instance.Config{Store: shared.Store(t), Catalog: cat, ServiceDomain: "localhost:8443",
		DeviceHost: "localhost:8443", HubChecker: failingHubs})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Manager: m, Catalog: cat, Token: testToken, MaxBody: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, ctl: dpsclient.NewControl(srv.URL, testToken, srv.Client())}
}

// armPath is the path of instance name in the default scope, plus sub.
func armPath(name string, sub ...string) string {
	p := "/subscriptions/" + dpsclient.DefaultSubscription + "/resourceGroups/default/providers/Microsoft.Devices/provisioningServices/" + name
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

// raw sends a request with the operator token (unless a header overrides
// Authorization) and returns the status, the headers and the decoded JSON
// body (nil when empty or not JSON).
func (e *env) raw(method, path, body string, hdr ...string) (int, http.Header, map[string]any) {
	e.t.Helper()
	if !strings.Contains(path, "?") && strings.HasPrefix(path, "/subscriptions") {
		path += "?api-version=2022-02-05"
	}
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, resp.Header, out
}

// wantStatus checks the status and, for errors, the ARM+DPS error shape; it
// returns the message.
func wantStatus(t *testing.T, got, want int, body map[string]any) string {
	t.Helper()
	if got != want {
		t.Fatalf("status = %d, want %d (body %v)", got, want, body)
	}
	if got < 400 {
		return ""
	}
	code, _ := body["code"].(float64)
	ec, _ := body["errorCode"].(float64)
	msg, _ := body["message"].(string)
	if code == 0 || code != ec || int(code)/1000 != got || body["httpStatusCode"] == "" || body["trackingId"] == "" || msg == "" {
		t.Errorf("error body has not the ARM+DPS shape: %v", body)
	}
	if arm, _ := body["error"].(map[string]any); arm == nil || arm["code"] != body["httpStatusCode"] || arm["message"] != msg {
		t.Errorf("error body lacks the ARM error {code, message}: %v", body)
	}
	return msg
}

func wantAPIStatus(t *testing.T, err error, want int) string {
	t.Helper()
	var e *dpsclient.ControlError
	if !errors.As(err, &e) || e.StatusCode != want {
		t.Fatalf("err = %v, want status %d", err, want)
	}
	return e.Message
}

func hubCS(host string) string {
	return "HostName=" + host + ";SharedAccessKeyName=iothubowner;SharedAccessKey=" + instance.NewKey()
}
