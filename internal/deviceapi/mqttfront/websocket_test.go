package mqttfront_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWebSocket registers over MQTT over WebSocket on both paths the
// SDKs use (§1.1).
func TestWebSocket(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	for _, path := range []string{"/$iothub/websocket", "/"} {
		d := ts.mustConnect(t, "dev1", &devOpts{broker: wsURL(ts, path)})
		d.publish(registerT+"ws", 1, `{"registrationId":"dev1"}`)
		if m := d.next(); m.Topic() != resPrefix+"200/?$rid=ws" {
			t.Errorf("%s: topic %q", path, m.Topic())
		}
		d.c.Disconnect(50)
	}
	for _, c := range fe.Calls("Register") {
		if c.req.Transport != "mqtt-ws" || c.req.ClientAddr != "127.0.0.1" {
			t.Errorf("engine request transport %q, client %q", c.req.Transport, c.req.ClientAddr)
		}
	}
}

// TestWebSocketSubprotocol: "mqtt" is matched in any case and echoed as
// the client spelled it; without it the upgrade is refused.
func TestWebSocketSubprotocol(t *testing.T) {
	ts := startServer(t, &fakeEngine{}, limits())
	dialer := websocket.Dialer{TLSClientConfig: ts.clientTLS(nil), HandshakeTimeout: 5 * time.Second}
	for _, tt := range []struct {
		offered []string
		want    string // "" : refused
	}{
		{[]string{"mqtt"}, "mqtt"},
		{[]string{"MQTT"}, "MQTT"},
		{[]string{"mqttv3.1", "Mqtt"}, "Mqtt"},
		{nil, ""},
		{[]string{"AMQPWSB10"}, ""},
	} {
		dialer.Subprotocols = tt.offered
		c, resp, err := dialer.Dial(wsURL(ts, "/$iothub/websocket"), nil)
		if tt.want == "" {
			if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("offered %v: err %v, want 400", tt.offered, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("offered %v: %v", tt.offered, err)
			continue
		}
		if got := c.Subprotocol(); got != tt.want {
			t.Errorf("offered %v: subprotocol %q, want %q", tt.offered, got, tt.want)
		}
		c.Close()
	}
}

// TestWebSocketOnlyUpgrades: plain requests to the WebSocket paths, and
// upgrades to other paths, are not MQTT.
func TestWebSocketOnlyUpgrades(t *testing.T) {
	ts := startServer(t, &fakeEngine{}, limits())
	hc := ts.https.Client()
	resp, err := hc.Get(ts.https.URL + "/$iothub/websocket")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET without upgrade: %d, want the device API's answer (404 here)", resp.StatusCode)
	}
	dialer := websocket.Dialer{TLSClientConfig: ts.clientTLS(nil), Subprotocols: []string{"mqtt"}}
	if _, resp, err := dialer.Dial(wsURL(ts, "/other"), nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("upgrade on /other: %v", err)
	}
	if !strings.HasPrefix(ts.https.URL, "https://") {
		t.Fatal(ts.https.URL)
	}
}
