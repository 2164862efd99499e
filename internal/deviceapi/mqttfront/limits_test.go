package mqttfront_test

import (
	"bytes"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
)

// limits are test limits: short timeouts, defaults otherwise.
func limits() mqttfront.Limits {
	return mqttfront.Limits{ConnectTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConnectionLimits: connections over the per-address or total limit
// are closed before the TLS handshake; a freed slot is reusable.
func TestConnectionLimits(t *testing.T) {
	for _, tt := range []struct {
		name string
		lim  mqttfront.Limits
	}{
		{"per IP", mqttfront.Limits{MaxConnectionsPerIP: 2}},
		{"total", mqttfront.Limits{MaxConnections: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lim := limits()
			lim.MaxConnectionsPerIP, lim.MaxConnections = tt.lim.MaxConnectionsPerIP, tt.lim.MaxConnections
			ts := startServer(t, &fakeEngine{}, lim)
			a := ts.mustConnect(t, "dev-a", nil)
			ts.mustConnect(t, "dev-b", nil)
			if _, err := tls.Dial("tcp", ts.addr, ts.clientTLS(nil)); err == nil {
				t.Fatal("third connection: TLS handshake succeeded, want the connection closed")
			}
			a.c.Disconnect(50)
			waitFor(t, "the slot to free", func() bool { return ts.srv.Connections() == 1 })
			ts.mustConnect(t, "dev-c", nil)
		})
	}
}

// TestConnectTimeout: a connection that sends no CONNECT (or no TLS
// handshake) in time is closed.
func TestConnectTimeout(t *testing.T) {
	lim := limits()
	lim.ConnectTimeout = 200 * time.Millisecond
	ts := startServer(t, &fakeEngine{}, lim)
	plain, err := net.Dial("tcp", ts.addr) // never starts TLS
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	start := time.Now()
	c := ts.dialRaw(t, nil) // TLS, then silence
	c.closed(3 * time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
	plain.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := plain.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("silent TCP connection: read = %v, want closed", err)
	}
	waitFor(t, "no connection left", func() bool { return ts.srv.Connections() == 0 })
}

// TestKeepAliveEnforced: a device asking for no keep-alive gets the cap,
// and an idle connection is closed after 1.5 keep-alive periods.
func TestKeepAliveEnforced(t *testing.T) {
	lim := limits()
	lim.MaxKeepAlive = time.Second
	ts := startServer(t, &fakeEngine{}, lim)
	c := ts.dialRaw(t, nil)
	c.connack(connectFields{name: "MQTT", level: 4, clientID: "dev1", user: ts.usernameOf("dev1"), pass: sasOf("dev1"), keepAlive: 0})
	start := time.Now()
	c.send(packet(0xc0, nil)) // PINGREQ
	if first, _, ok := c.read(); !ok || first != 0xd0 {
		t.Fatalf("PINGREQ answered %#x %v, want PINGRESP", first, ok)
	}
	c.closed(4 * time.Second)
	if d := time.Since(start); d < time.Second {
		t.Errorf("closed after %v, want about 1.5 s of idleness", d)
	}
}

// TestPacketTooLarge: a packet over MaxPacketSize disconnects the client
// (before CONNECT too); a register payload over MaxBody but within the
// packet limit is answered 413.
func TestPacketTooLarge(t *testing.T) {
	lim := limits()
	lim.MaxPacketSize = 4096
	lim.MaxBody = 1024
	fe := &fakeEngine{}
	ts := startServer(t, fe, lim)
	huge := connectPacket(connectFields{name: "MQTT", level: 4, clientID: "dev1", user: ts.usernameOf("dev1"),
		pass: strings.Repeat("p", 5000), keepAlive: 60})
	c := ts.dialRaw(t, nil)
	c.Write(huge) // may fail half-way: the server closes as soon as it reads the length
	c.closed(2 * time.Second)

	d := ts.mustConnect(t, "dev1", nil)
	d.publish(registerT+"big", 1, `{"payload":"`+strings.Repeat("x", 2000)+`"}`)
	if m := d.next(); m.Topic() != resPrefix+"413/?$rid=big" {
		t.Errorf("payload over MaxBody: topic %q, want 413", m.Topic())
	}
	d.c.Publish(registerT+"huger", 1, false, strings.Repeat("x", 5000))
	d.waitLost()
	if n := len(fe.Calls("Register")); n != 0 {
		t.Errorf("%d Register calls, want none", n)
	}
}

// TestFloodDisconnects: a client publishing faster than its request rate
// is disconnected; another device connected meanwhile is not affected.
func TestFloodDisconnects(t *testing.T) {
	lim := limits()
	lim.PacketRate, lim.PacketBurst = 5, 5
	fe := &fakeEngine{}
	ts := startServer(t, fe, lim)
	good := ts.mustConnect(t, "good", nil)
	bad := ts.dialRaw(t, nil)
	bad.connack(connectFields{name: "MQTT", level: 4, clientID: "bad", user: ts.usernameOf("bad"), pass: sasOf("bad"), keepAlive: 60})
	var flood bytes.Buffer
	for range 50 {
		flood.Write(publishPacket(registerT+"f", 0, nil))
	}
	bad.Write(flood.Bytes())
	bad.closed(3 * time.Second)
	if n := len(fe.Calls("Register")); n > 5 {
		t.Errorf("%d Register calls from the flood, want at most the burst (5)", n)
	}
	good.publish(registerT+"ok", 1, "")
	if m := good.next(); m.Topic() != resPrefix+"200/?$rid=ok" {
		t.Errorf("good device: topic %q", m.Topic())
	}
}

// TestInflightLimit: requests beyond MaxInflight are answered 429 with
// retry-after at once, without calling the engine.
func TestInflightLimit(t *testing.T) {
	release := make(chan struct{})
	fe := &fakeEngine{register: func(req *engine.Request) (*engine.Result, error) {
		<-release
		return assigned(req.RegistrationID, "op"), nil
	}}
	lim := limits()
	lim.MaxInflight = 1
	ts := startServer(t, fe, lim)
	d := ts.mustConnect(t, "dev1", nil)
	d.publish(registerT+"first", 1, "")
	waitFor(t, "the first request to reach the engine", func() bool { return len(fe.Calls("Register")) == 1 })
	d.publish(registerT+"second", 1, "")
	m := d.next()
	if m.Topic() != resPrefix+"429/?$rid=second&retry-after=1" {
		t.Errorf("second request: topic %q", m.Topic())
	}
	if b := decode[apierr.Body](t, m); b.ErrorCode != apierr.CodeThrottled {
		t.Errorf("second request: body %s", m.Payload())
	}
	close(release)
	if m := d.next(); m.Topic() != resPrefix+"200/?$rid=first" {
		t.Errorf("first request: topic %q", m.Topic())
	}
}

// TestPingUnsubscribeDisconnect: PINGREQ is answered, UNSUBSCRIBE gets
// UNSUBACK (the Node SDK never resolves without it), and after it no
// response is delivered; DISCONNECT closes cleanly.
func TestPingUnsubscribeDisconnect(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	c := ts.dialRaw(t, nil)
	c.connack(connectFields{name: "MQTT", level: 4, clientID: "dev1", user: ts.usernameOf("dev1"), pass: sasOf("dev1"), keepAlive: 60})
	c.send(subscribePacket(9, mqttfront.ResponseFilter, 1))
	if first, body, _ := c.read(); first != 0x90 || !bytes.Equal(body, []byte{0, 9, 1}) {
		t.Fatalf("SUBACK = %#x %v, want id 9 granted 1", first, body)
	}
	c.send(packet(0xc0, nil))
	if first, _, _ := c.read(); first != 0xd0 {
		t.Fatalf("PINGREQ answered %#x, want PINGRESP", first)
	}
	c.send(packet(0xa2, append([]byte{0, 10}, str(mqttfront.ResponseFilter)...)))
	if first, body, _ := c.read(); first != 0xb0 || !bytes.Equal(body, []byte{0, 10}) {
		t.Fatalf("UNSUBACK = %#x %v, want id 10", first, body)
	}
	c.send(publishPacket(registerT+"after-unsub", 1, nil))
	if first, body, _ := c.read(); first != 0x40 || !bytes.Equal(body, []byte{0, 7}) {
		t.Fatalf("PUBACK = %#x %v", first, body)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("a response was delivered after UNSUBSCRIBE")
	}
	c.send(packet(0xe0, nil))
	c.closed(2 * time.Second)
	waitFor(t, "no connection left", func() bool { return ts.srv.Connections() == 0 })
}

// TestResponseQoS0Subscriber: a device subscribed at QoS 0 gets its
// responses at QoS 0 (capped at the subscription's QoS).
func TestResponseQoS0Subscriber(t *testing.T) {
	ts := startServer(t, &fakeEngine{}, limits())
	d, err := ts.connect(t, "dev1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.subscribe(mqttfront.ResponseFilter, 0); got != 0 {
		t.Fatalf("granted %d", got)
	}
	d.publish(registerT+"q0", 0, "")
	if m := d.next(); m.Qos() != 0 {
		t.Errorf("response QoS = %d, want 0", m.Qos())
	}
}
