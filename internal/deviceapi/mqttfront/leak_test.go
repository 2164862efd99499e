package mqttfront_test

import (
	"net"
	"testing"

	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"go.uber.org/goleak"
)

// TestNoGoroutineLeaks runs many connect / register / disconnect cycles
// (TLS and WebSocket, accepted and refused, clean and abrupt), closes the
// server, and checks that every goroutine it started is gone.
func TestNoGoroutineLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fe := &fakeEngine{}
	ts := startServerNoCleanup(t, fe, limits())
	for i := range 40 {
		broker := "ssl://" + ts.addr
		if i%2 == 1 {
			broker = wsURL(ts, "/$iothub/websocket")
		}
		d := ts.mustConnect(t, "dev1", &devOpts{broker: broker})
		d.publish(registerT+"x", 1, "")
		d.next()
		if i%3 == 0 {
			ts.dialRaw(t, nil).Close() // abrupt
		}
		if i%5 == 0 {
			ts.connect(t, "dev1", &devOpts{password: "wrong", broker: broker}) // refused
		}
		d.c.Disconnect(10)
	}
	// Connections left open are closed by Close.
	ts.mustConnect(t, "dev2", nil)
	ts.mustConnect(t, "dev3", &devOpts{broker: wsURL(ts, "/")})
	ts.close(t)
	if n := ts.srv.Connections(); n != 0 {
		t.Errorf("%d connections after Close", n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Serve(ln); err != mqttfront.ErrServerClosed {
		t.Errorf("Serve after Close = %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("Serve after Close left its listener open")
	}
}
