package mqttfront_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// TestRegisterFastPath is the one-round-trip case: the engine's first
// answer is terminal, so the register response is res/200 with status
// assigned and the whole registrationState (§4.3).
func TestRegisterFastPath(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	d := ts.mustConnect(t, "dev1", nil)
	d.publish(registerT+"be0c4900-2a38-41ba-b2eb-798aa3d94358", 1, `{"registrationId":"dev1","payload":{"modelId":"dtmi:x;1"}}`)
	m := d.next()
	if got, want := m.Topic(), resPrefix+"200/?$rid=be0c4900-2a38-41ba-b2eb-798aa3d94358"; got != want {
		t.Errorf("topic = %q, want %q", got, want)
	}
	if m.Qos() != 1 {
		t.Errorf("response QoS = %d, want 1", m.Qos())
	}
	st := decode[model.RegistrationOperationStatus](t, m)
	if st.Status != "assigned" || st.RegistrationState == nil || st.RegistrationState.AssignedHub == "" {
		t.Errorf("payload = %s", m.Payload())
	}
	calls := fe.Calls("Register")
	if len(calls) != 1 {
		t.Fatalf("%d Register calls, want 1", len(calls))
	}
	r := calls[0].req
	if r.IDScope != testScope || r.RegistrationID != "dev1" || r.SASToken != sasOf("dev1") || r.Transport != "mqtt" ||
		r.ClientAddr != "127.0.0.1" || r.Body == nil || string(r.Body.Payload) != `{"modelId":"dtmi:x;1"}` {
		t.Errorf("engine request = %+v (body %+v)", r, r.Body)
	}
	if n := len(fe.Calls("Authenticate")); n != 1 {
		t.Errorf("%d Authenticate calls, want 1 (at CONNECT)", n)
	}
}

// TestRegisterSlowPathThenPoll follows the capture (wire-captures.md
// [14]-[21]): res/202 with retry-after and a registrationState, a poll
// with the operation id, res/200.
func TestRegisterSlowPathThenPoll(t *testing.T) {
	fe := &fakeEngine{register: func(*engine.Request) (*engine.Result, error) { return assigning("4.81be.bdb6", 3), nil }}
	ts := startServer(t, fe, limits())
	d := ts.mustConnect(t, "dev1", nil)
	d.publish(registerT+"r1", 1, `{"registrationId":"dev1"}`)
	m := d.next()
	if got, want := m.Topic(), resPrefix+"202/?$rid=r1&retry-after=3"; got != want {
		t.Errorf("register topic = %q, want %q", got, want)
	}
	st := decode[model.RegistrationOperationStatus](t, m)
	if st.Status != "assigning" || st.OperationID != "4.81be.bdb6" || st.RegistrationState == nil ||
		st.RegistrationState.RegistrationID != "dev1" || st.RegistrationState.Status != "assigning" {
		t.Errorf("register payload = %s", m.Payload())
	}
	d.publish(pollT+"r2&operationId=4.81be.bdb6", 1, " ")
	m = d.next()
	if got, want := m.Topic(), resPrefix+"200/?$rid=r2"; got != want {
		t.Errorf("poll topic = %q, want %q", got, want)
	}
	if st := decode[model.RegistrationOperationStatus](t, m); st.Status != "assigned" {
		t.Errorf("poll payload = %s", m.Payload())
	}
	polls := fe.Calls("OperationStatus")
	if len(polls) != 1 || polls[0].opID != "4.81be.bdb6" {
		t.Errorf("polls = %+v", polls)
	}
	// A poll still assigning: 202 with the engine's default Retry-After.
	fe.set(func(f *fakeEngine) {
		f.poll = func(*engine.Request, string) (*engine.Result, error) { return assigning("4.81be.bdb6", 0), nil }
	})
	d.publish(pollT+"r3&operationId=4.81be.bdb6", 0, "")
	if got, want := d.next().Topic(), resPrefix+"202/?$rid=r3&retry-after=2"; got != want {
		t.Errorf("assigning poll topic = %q, want %q", got, want)
	}
}

// TestRidEchoedVerbatim: $rid is opaque, echoed byte for byte and first
// (§4.2, §4.3), whatever its form and wherever it is in the request.
func TestRidEchoedVerbatim(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	d := ts.mustConnect(t, "dev1", nil)
	for _, tt := range []struct{ topic, rid string }{
		{registerT + "1", "1"},
		{registerT + "be0c4900-2a38-41ba-b2eb-798aa3d94358", "be0c4900-2a38-41ba-b2eb-798aa3d94358"},
		{registerT + "be0c4900%2D2a38", "be0c4900%2D2a38"},
		{registerT + "a/b=c", "a/b=c"},
		{"$dps/registrations/PUT/iotdps-register/?x=1&$rid=late", "late"},
		{pollT + "p1&operationId=op-dev1", "p1"},
		{"$dps/registrations/GET/iotdps-get-operationstatus/?operationId=op-dev1&$rid=p2", "p2"},
	} {
		d.publish(tt.topic, 1, "")
		m := d.next()
		if want := resPrefix + "200/?$rid=" + tt.rid; m.Topic() != want {
			t.Errorf("%s: topic = %q, want %q", tt.topic, m.Topic(), want)
		}
	}
}

// TestErrorResponses: every refusal is answered on the response topic
// with its status, the DPS error body, and retry-after when the engine
// gave a Retry-After; requests that cannot be valid never reach the
// engine.
func TestErrorResponses(t *testing.T) {
	throttled := apierr.New(apierr.CodeThrottled, "Too many requests; retry after 7 seconds.")
	throttled.Header = http.Header{"Retry-After": {"7"}}
	tests := []struct {
		name      string
		err       error  // Register / OperationStatus error
		topic     string // default register with rid e
		payload   string
		wantTopic string
		wantCode  int
		noEngine  bool
	}{
		{name: "throttled", err: throttled, wantTopic: "429/?$rid=e&retry-after=7", wantCode: 429001},
		{name: "unknown operation", topic: pollT + "e&operationId=5.x", err: apierr.New(apierr.CodeOperationNotFound, "no"),
			wantTopic: "404/?$rid=e", wantCode: 404203},
		{name: "internal error", err: errBoom, wantTopic: "500/?$rid=e", wantCode: 500000},
		{name: "body id of another device", payload: `{"registrationId":"dev2"}`, wantTopic: "400/?$rid=e", wantCode: 400008, noEngine: true},
		{name: "malformed JSON", payload: `{"registrationId":`, wantTopic: "400/?$rid=e", wantCode: 400008, noEngine: true},
		{name: "payload of the wrong type", payload: `[1,2]`, wantTopic: "400/?$rid=e", wantCode: 400008, noEngine: true},
		{name: "oversized payload", payload: `{"payload":"` + strings.Repeat("x", 2000) + `"}`, wantTopic: "413/?$rid=e", wantCode: 413000, noEngine: true},
		{name: "poll without operation id", topic: pollT + "e", wantTopic: "400/?$rid=e", wantCode: 400008, noEngine: true},
		{name: "poll with a bad operation id", topic: pollT + "e&operationId=a$b", wantTopic: "400/?$rid=e", wantCode: 400008, noEngine: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &fakeEngine{
				register: func(*engine.Request) (*engine.Result, error) { return nil, tt.err },
				poll:     func(*engine.Request, string) (*engine.Result, error) { return nil, tt.err },
			}
			lim := limits()
			lim.MaxBody = 1024
			ts := startServer(t, fe, lim)
			d := ts.mustConnect(t, "dev1", nil)
			topic := tt.topic
			if topic == "" {
				topic = registerT + "e"
			}
			d.publish(topic, 1, tt.payload)
			m := d.next()
			if got, want := m.Topic(), resPrefix+tt.wantTopic; got != want {
				t.Errorf("topic = %q, want %q", got, want)
			}
			b := decode[apierr.Body](t, m)
			if b.ErrorCode != tt.wantCode || b.TrackingID == "" || b.Message == "" || b.TimestampUTC == "" {
				t.Errorf("error body = %s, want errorCode %d", m.Payload(), tt.wantCode)
			}
			if strings.Contains(string(m.Payload()), "boom") {
				t.Errorf("error body leaks the internal cause: %s", m.Payload())
			}
			n := len(fe.Calls("Register")) + len(fe.Calls("OperationStatus"))
			if tt.noEngine && n != 0 {
				t.Errorf("%d engine calls, want none", n)
			}
		})
	}
}

// TestRegisterPayloads: the payloads of every SDK are accepted (§2.3,
// §4.2): empty (C#), one space (Node poll), JSON with null payload
// (Python), registration id in another case.
func TestRegisterPayloads(t *testing.T) {
	fe := &fakeEngine{}
	ts := startServer(t, fe, limits())
	d := ts.mustConnect(t, "Dev1", &devOpts{clientID: "dev1"})
	for _, p := range []string{"", " ", `{"payload": null, "registrationId": "Dev1"}`, `{"registrationId":"DEV1","unknown":1}`, `null`} {
		d.publish(registerT+"x", 1, p)
		if m := d.next(); !strings.HasPrefix(m.Topic(), resPrefix+"200/") {
			t.Errorf("payload %q: topic %q", p, m.Topic())
		}
	}
}

var errBoom = errorString("boom: disk on fire")

type errorString string

func (e errorString) Error() string { return string(e) }
