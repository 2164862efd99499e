package mqttfront_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/opendps/opendps/internal/apierr"
)

// TestConnectRefusals: each CONNECT DPS would not accept gets its MQTT
// 3.1.1 return code (MQTT 5: reason 0x84), and nothing reaches the
// engine's Register.
func TestConnectRefusals(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	user := ts.usernameOf("dev1")
	ok := connectFields{name: "MQTT", level: 4, clientID: "dev1", user: user, pass: sasOf("dev1"), keepAlive: 60}
	with := func(mut func(*connectFields)) connectFields {
		f := ok
		mut(&f)
		return f
	}
	tests := []struct {
		name string
		f    connectFields
		want []byte // CONNACK body: session present, return code
	}{
		{"valid", ok, []byte{0, 0}},
		{"wrong SAS token", with(func(f *connectFields) { f.pass = sasOf("dev2") }), []byte{0, 5}},
		{"no credential", with(func(f *connectFields) { f.pass = "" }), []byte{0, 5}},
		{"unknown ID scope", with(func(f *connectFields) { f.user = "0ne0000FFFF/registrations/dev1/api-version=2019-03-31" }), []byte{0, 5}},
		{"client id is not the registration id", with(func(f *connectFields) { f.clientID = "dev2" }), []byte{0, 2}},
		{"empty client id", with(func(f *connectFields) { f.clientID = "" }), []byte{0, 2}},
		{"no username", with(func(f *connectFields) { f.user, f.pass = "", "" }), []byte{0, 4}},
		{"username without registrations", with(func(f *connectFields) { f.user = testScope + "/devices/dev1/api-version=2019-03-31" }), []byte{0, 4}},
		{"username with a bad scope", with(func(f *connectFields) { f.user = "scope/registrations/dev1/api-version=2019-03-31" }), []byte{0, 4}},
		{"username with a bad registration id", with(func(f *connectFields) { f.user = testScope + "/registrations/dev 1/api-version=2019-03-31" }), []byte{0, 4}},
		{"username with a bad api-version", with(func(f *connectFields) { f.user = testScope + "/registrations/dev1/api-version=yesterday" }), []byte{0, 4}},
		{"a will", with(func(f *connectFields) { f.will = "$dps/registrations/res/200/?$rid=1" }), []byte{0, 5}},
		{"MQTT 3.1 (level 3)", with(func(f *connectFields) { f.name, f.level = "MQIsdp", 3 }), []byte{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dialRaw(t, nil)
			if got := c.connack(tt.f); !bytes.Equal(got, tt.want) {
				t.Fatalf("CONNACK = %v, want %v", got, tt.want)
			}
			if tt.want[1] != 0 {
				c.closed(2 * time.Second)
			}
		})
	}
	t.Run("MQTT 5", func(t *testing.T) {
		c := ts.dialRaw(t, nil)
		got := c.connack(with(func(f *connectFields) { f.level = 5 }))
		if len(got) < 2 || got[1] != 0x84 {
			t.Fatalf("CONNACK = %v, want reason 0x84 (unsupported protocol version)", got)
		}
		c.closed(2 * time.Second)
	})
	if n := len(fe.Calls("Register")); n != 0 {
		t.Errorf("%d Register calls, want none", n)
	}
}

// TestConnectEngineUnavailable: the engine failing (not refusing) is
// "server unavailable", which clients retry (C# maps 3 to transient).
func TestConnectEngineUnavailable(t *testing.T) {
	fe := &fakeEngine{authErr: apierr.New(apierr.CodeUnavailable, "try again")}
	ts := startServer(t, fe, limits())
	_, err := ts.connect(t, "dev1", nil)
	if !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("connect = %v, want server unavailable (3)", err)
	}
}

// TestSessionPresentAlwaysZero: CONNACK says session-present 0 even to a
// device that asks for a persistent session and reconnects, and a second
// connection does not take over the first (C# aborts on session-present
// 1, §4.1).
func TestSessionPresentAlwaysZero(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	f := connectFields{name: "MQTT", level: 4, clientID: "dev1", user: ts.usernameOf("dev1"), pass: sasOf("dev1"), keepAlive: 60}
	raw := connectPacket(f)
	raw[9] &^= 0x02 // clear "clean session"
	first := ts.dialRaw(t, nil)
	first.send(raw)
	if _, b, ok := first.read(); !ok || !bytes.Equal(b, []byte{0, 0}) {
		t.Fatalf("first CONNACK = %v", b)
	}
	first.send(subscribePacket(1, "$dps/registrations/res/#", 1))
	first.read()
	second := ts.dialRaw(t, nil)
	second.send(raw)
	if _, b, ok := second.read(); !ok || !bytes.Equal(b, []byte{0, 0}) {
		t.Fatalf("second CONNACK = %v, want session-present 0", b)
	}
	// The first connection still works: it gets its answer.
	first.send(publishPacket(registerT+"still-here", 1, nil))
	for range 2 { // PUBACK, response
		first.SetReadDeadline(time.Now().Add(5 * time.Second))
		fb, body, ok := first.read()
		if !ok {
			t.Fatal("the first connection was taken over")
		}
		if fb&0xf0 == 0x30 && !bytes.Contains(body, []byte("still-here")) {
			t.Fatalf("response %q", body)
		}
	}
}

// TestX509 authenticates with a TLS client certificate and no password,
// over TLS and over WebSocket; a certificate of another device is
// refused with 5.
func TestX509(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	cert := ts.deviceCert(t, "x509-dev-01")
	for _, broker := range []string{"ssl://" + ts.addr, wsURL(ts, "/$iothub/websocket")} {
		d := ts.mustConnect(t, "x509-dev-01", &devOpts{cert: cert, broker: broker})
		d.publish(registerT+"x", 1, `{"registrationId":"x509-dev-01"}`)
		if m := d.next(); !strings.HasPrefix(m.Topic(), resPrefix+"200/") {
			t.Errorf("%s: topic %q", broker, m.Topic())
		}
		d.c.Disconnect(50)
	}
	for _, c := range fe.Calls("Register") {
		if c.req.SASToken != "" || len(c.req.PeerCertificates) == 0 || c.req.PeerCertificates[0].Subject.CommonName != "x509-dev-01" {
			t.Errorf("engine request: sas %q, chain %d", c.req.SASToken, len(c.req.PeerCertificates))
		}
	}
	_, err := ts.connect(t, "x509-dev-02", &devOpts{cert: cert})
	if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Errorf("certificate of another device: %v, want not authorized", err)
	}
}
