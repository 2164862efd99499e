package allocate

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
)

// webhookServer starts a TLS webhook answering with h and returns the
// enrollment group pointing at it and a Webhook trusting it.
func webhookServer(t *testing.T, h http.HandlerFunc) (*model.EnrollmentGroup, *Webhook) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	g := group("custom", "weu-a.azure-devices.net", "reserved.azure-devices.net")
	g.Attestation.SymmetricKey = &model.SymmetricKeyAttestation{PrimaryKey: "c2VjcmV0LWtleQ==", SecondaryKey: "c2VjcmV0LWtleQ=="}
	g.ReprovisionPolicy = &model.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	g.CustomAllocationDefinition = &model.CustomAllocationDefinition{WebhookURL: srv.URL + "/api/alloc?code=secret-function-key", APIVersion: "2021-10-01"}
	return g, &Webhook{TLSConfig: &tls.Config{RootCAs: roots}, Timeout: 2 * time.Second}
}

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func TestCustomAllocation(t *testing.T) {
	var got map[string]any
	var gotReq *http.Request
	g, wh := webhookServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotReq = r
		json.NewDecoder(r.Body).Decode(&got)
		// Property names are matched case-insensitively.
		io.WriteString(w, `{"IotHubHostName":"WEU-A.azure-devices.net","InitialTwin":{"tags":{"t":1},"properties":{"desired":{"d":2}}},"Payload":{"hello":"world"}}`)
	})
	res, err := (&Allocator{Webhook: wh}).Allocate(context.Background(), Request{
		RegistrationID: "breakroom499-contoso-tstrsd-007", Group: g, LinkedHubs: linked,
		Current: &Assignment{Hub: "eus.azure-devices.net", DeviceID: "old-id"},
		Payload: json.RawMessage(`{"MyDeviceFirmwareVersion":"12.0.2.5"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hub != "weu-a.azure-devices.net" || res.Policy != "custom" || string(res.Payload) != `{"hello":"world"}` ||
		res.InitialTwin == nil || string(res.InitialTwin.Tags) != `{"t":1}` || string(res.InitialTwin.Properties.Desired) != `{"d":2}` {
		t.Errorf("result = %+v", res)
	}
	if gotReq.Method != http.MethodPost || gotReq.URL.Query().Get("code") != "secret-function-key" || !strings.HasPrefix(gotReq.Header.Get("Content-Type"), "application/json") {
		t.Errorf("request: %s %s %v", gotReq.Method, gotReq.URL, gotReq.Header)
	}
	want := map[string]any{
		"enrollmentGroup": map[string]any{
			"enrollmentGroupId": "g", "attestation": map[string]any{"type": "symmetricKey"},
			"allocationPolicy": "custom", "iotHubs": []any{"weu-a.azure-devices.net", "reserved.azure-devices.net"},
			"reprovisionPolicy":          map[string]any{"updateHubAssignment": true, "migrateDeviceData": true},
			"customAllocationDefinition": map[string]any{"webhookUrl": g.CustomAllocationDefinition.WebhookURL[:strings.Index(g.CustomAllocationDefinition.WebhookURL, "?")] + "?****", "apiVersion": "2021-10-01"},
		},
		"deviceRuntimeContext": map[string]any{
			"registrationId":        "breakroom499-contoso-tstrsd-007",
			"currentIotHubHostName": "eus.azure-devices.net", "currentIoTHubHostName": "eus.azure-devices.net",
			"currentDeviceId": "old-id", "symmetricKey": map[string]any{},
			"payload": map[string]any{"MyDeviceFirmwareVersion": "12.0.2.5"},
		},
		// Listed hubs are offered even without applyAllocationPolicy.
		"linkedHubs": []any{"weu-a.azure-devices.net", "reserved.azure-devices.net"},
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("webhook request body\n got %s\nwant %s", g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCustomAllocationFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
		want    error
		msg     string // substring
	}{
		{name: "non-2xx", handler: answer(400, "No hub group defined for the enrollment."), want: ErrWebhookStatus,
			msg: "custom allocation webhook answered HTTP 400 Bad Request: No hub group defined for the enrollment."},
		{name: "5xx long body", handler: answer(500, strings.Repeat("x", 1000)), want: ErrWebhookStatus,
			msg: "answered HTTP 500 Internal Server Error: " + strings.Repeat("x", 256) + "..."},
		{name: "redirect is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusTemporaryRedirect)
		}, want: ErrWebhookStatus, msg: "answered HTTP 307 Temporary Redirect"},
		{name: "timeout", timeout: 100 * time.Millisecond, handler: func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, want: ErrWebhookTimeout, msg: "custom allocation webhook did not answer within 100ms"},
		{name: "bad JSON", handler: answer(200, "<html>oops</html>"), want: ErrWebhookResponse, msg: "custom allocation webhook answered invalid JSON"},
		{name: "wrong type", handler: answer(200, `{"iotHubHostName":42}`), want: ErrWebhookResponse},
		{name: "no hub", handler: answer(200, `{"payload":{"a":1}}`), want: ErrWebhookHub, msg: `custom allocation webhook answered without iotHubHostName: {"payload":{"a":1}}`},
		{name: "hub outside linkedHubs", handler: answer(200, `{"iotHubHostName":"eus.azure-devices.net"}`), want: ErrWebhookHub,
			msg: `custom allocation webhook chose IoT hub "eus.azure-devices.net", which is not one of the offered linkedHubs [weu-a.azure-devices.net, reserved.azure-devices.net]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, wh := webhookServer(t, tt.handler)
			if tt.timeout != 0 {
				wh.Timeout = tt.timeout
			}
			_, err := (&Allocator{Webhook: wh}).Allocate(context.Background(), Request{RegistrationID: "dev1", Group: g, LinkedHubs: linked})
			checkError(t, err, tt.want, CodeCustomAllocationFailed, "")
			if !errors.Is(err, ErrWebhook) {
				t.Errorf("err = %v, want ErrWebhook too", err)
			}
			if msg := err.(*Error).Message; !strings.Contains(msg, tt.msg) {
				t.Errorf("message = %q\nwant it to contain %q", msg, tt.msg)
			}
			for e := error(err); e != nil; e = errors.Unwrap(e) {
				if strings.Contains(e.Error(), "secret-function-key") {
					t.Fatalf("error leaks the function key: %v", e)
				}
			}
		})
	}
}

func TestCustomAllocationTransport(t *testing.T) {
	g, wh := webhookServer(t, answer(200, `{"iotHubHostName":"weu-a.azure-devices.net"}`))
	req := Request{RegistrationID: "dev1", Group: g, LinkedHubs: linked}

	// The server's certificate is not trusted without the injected TLS config.
	_, err := (&Allocator{Webhook: &Webhook{}}).Allocate(context.Background(), req)
	checkError(t, err, ErrWebhookTimeout, CodeCustomAllocationFailed, "")
	if msg := err.(*Error).Message; !strings.Contains(msg, "could not be reached") || !strings.Contains(msg, "certificate") || strings.Contains(err.Error(), "secret-function-key") {
		t.Errorf("untrusted server: %v", err)
	}

	// A caller that gives up gets its context error, not a webhook failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = (&Allocator{Webhook: wh}).Allocate(ctx, req)
	var ae *Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &ae) {
		t.Errorf("canceled: err = %v, want context.Canceled", err)
	}

	// Never reprovision: the webhook is offered the current hub only.
	var body AllocationRequest
	g2, wh2 := webhookServer(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&body)
		io.WriteString(w, `{"iotHubHostName":"eus.azure-devices.net","payload":null}`)
	})
	g2.ReprovisionPolicy = &model.ReprovisionPolicy{UpdateHubAssignment: false}
	res, err := (&Allocator{Webhook: wh2}).Allocate(context.Background(), Request{RegistrationID: "dev1", Group: g2, LinkedHubs: linked,
		Current: &Assignment{Hub: "eus.azure-devices.net", DeviceID: "dev1"}})
	if err != nil || res.Hub != "eus.azure-devices.net" || res.Payload != nil || strings.Join(body.LinkedHubs, ",") != "eus.azure-devices.net" {
		t.Errorf("never reprovision: %+v, %v, offered %v", res, err, body.LinkedHubs)
	}
}

func TestCustomAllocationX509Context(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "dev1"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)

	var body map[string]any
	g, wh := webhookServer(t, func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&body)
		io.WriteString(w, `{"iotHubHostName":"weu-a.azure-devices.net"}`)
	})
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{CAReferences: &model.X509CAReferences{Primary: "ca"}}}
	_, err := (&Allocator{Webhook: wh}).Allocate(context.Background(), Request{RegistrationID: "dev1", Group: g, LinkedHubs: linked,
		Device: Device{AttestationType: model.AttestationX509, Certificate: cert}})
	if err != nil {
		t.Fatal(err)
	}
	rc := body["deviceRuntimeContext"].(map[string]any)
	info, _ := rc["x509"].(map[string]any)["certificateInfo"].(map[string]any)
	if info["subjectName"] != "CN=dev1" || rc["symmetricKey"] != nil || rc["currentIotHubHostName"] != nil {
		t.Errorf("deviceRuntimeContext = %v", rc)
	}
	if att := body["enrollmentGroup"].(map[string]any)["attestation"]; mustJSON(t, att) != `{"type":"x509"}` {
		t.Errorf("attestation not redacted: %v", att)
	}
}
