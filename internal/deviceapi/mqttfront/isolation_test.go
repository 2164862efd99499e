package mqttfront_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// TestTwoDevicesNeverSeeEachOther: devices connected at the same time,
// all subscribed to the same response filter, each registering and
// polling with its own rids, only ever receive their own responses.
func TestTwoDevicesNeverSeeEachOther(t *testing.T) {
	fe := &fakeEngine{register: func(req *engine.Request) (*engine.Result, error) {
		time.Sleep(5 * time.Millisecond) // keep requests of both devices in flight together
		return assigning("op-"+req.RegistrationID, 1), nil
	}}
	lim := limits()
	lim.MaxInflight = 16
	ts := startServer(t, fe, lim)
	ids := []string{"dev-a", "dev-b", "dev-c"}
	devs := map[string]*device{}
	for _, id := range ids {
		devs[id] = ts.mustConnect(t, id, nil)
	}
	const rounds = 5
	var wg sync.WaitGroup
	for _, id := range ids {
		d := devs[id]
		wg.Go(func() {
			for i := range rounds {
				d.c.Publish(fmt.Sprintf("%s%s-reg-%d", registerT, id, i), 1, false, `{"registrationId":"`+id+`"}`)
				d.c.Publish(fmt.Sprintf("%s%s-poll-%d&operationId=op-%s", pollT, id, i, id), 1, false, " ")
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		d := devs[id]
		for range 2 * rounds {
			m := d.next()
			rid := m.Topic()[strings.Index(m.Topic(), "$rid=")+5:]
			if !strings.HasPrefix(rid, id+"-") {
				t.Errorf("%s received %s", id, m.Topic())
			}
			st := decode[model.RegistrationOperationStatus](t, m)
			if st.RegistrationState == nil || st.RegistrationState.RegistrationID != id {
				t.Errorf("%s received the answer of %s", id, bytes.TrimSpace(m.Payload()))
			}
		}
		d.none(100 * time.Millisecond)
	}
}

// TestTopicACL: only the response filter may be subscribed (others get
// 0x80, QoS 2 is granted as 1); a publish anywhere else, or at QoS 2,
// disconnects the client.
func TestTopicACL(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	d := ts.mustConnect(t, "dev1", nil)
	for _, f := range []string{"#", "$dps/#", "$dps/registrations/res/+/#", "$SYS/#", "$dps/registrations/res/200/#", "devices/dev1/messages/events/"} {
		if got := d.subscribe(f, 1); got != 0x80 {
			t.Errorf("SUBACK for %q = %#x, want 0x80", f, got)
		}
	}
	if got := d.subscribe("$dps/registrations/res/#", 2); got != 1 {
		t.Errorf("SUBACK for the response filter at QoS 2 = %d, want 1", got)
	}
	for _, tt := range []struct {
		name  string
		topic string
		qos   byte
	}{
		{"another topic, QoS 1", "devices/dev1/messages/events/", 1},
		{"another topic, QoS 0", "$dps/registrations/res/200/?$rid=1", 0},
		{"register without $rid", "$dps/registrations/PUT/iotdps-register/?", 1},
		{"register with an empty $rid", registerT, 1},
		{"register topic in another case", "$dps/registrations/put/iotdps-register/?$rid=1", 1},
		{"QoS 2 register", registerT + "1", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ts.dialRaw(t, nil)
			c.connack(connectFields{name: "MQTT", level: 4, clientID: "dev2", user: ts.usernameOf("dev2"), pass: sasOf("dev2"), keepAlive: 60})
			c.send(subscribePacket(1, "$dps/registrations/res/#", 1))
			c.read()
			c.send(publishPacket(tt.topic, tt.qos, []byte("{}")))
			c.closed(2 * time.Second)
		})
	}
	// dev1 saw none of it.
	d.none(100 * time.Millisecond)
	if n := len(fe.Calls("Register")); n != 0 {
		t.Errorf("%d Register calls, want none", n)
	}
}
