package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/opendps/opendps/internal/model"
)

// checkMQTTIsolation connects devices over MQTT at the same time, every
// one subscribed to the same response filter, and has them register
// (with polls of an unknown operation in between) concurrently: each
// must receive its own responses only (spec §4.2: no device ever
// receives another device's response). Requests are not awaited one by
// one, so some are answered 429 (too many in flight on the connection)
// or 404 (the unknown operation): those must reach their device too.
func (e *deployment) checkMQTTIsolation(t *testing.T, devs []symCred) {
	pem, err := os.ReadFile(e.conn.CACertificate)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", e.conn.CACertificate)
	}
	const rounds = 4
	type got struct {
		topic string
		st    model.RegistrationOperationStatus
	}
	inbox := make(map[string]chan got)
	clients := make(map[string]paho.Client)
	for _, d := range devs {
		ch := make(chan got, 4*rounds)
		inbox[d.RegID] = ch
		opts := paho.NewClientOptions().AddBroker("ssl://" + e.conn.MQTTEndpoint).SetClientID(d.RegID).
			SetUsername(e.conn.IDScope + "/registrations/" + d.RegID + "/api-version=2019-03-31").
			SetPassword(e.deviceToken(t, e.conn.IDScope, d, time.Hour)).SetProtocolVersion(4).SetCleanSession(true).
			SetAutoReconnect(false).SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost"})
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", d.RegID, tok.Error())
		}
		defer c.Disconnect(50)
		tok := c.Subscribe("$dps/registrations/res/#", 1, func(_ paho.Client, m paho.Message) {
			var st model.RegistrationOperationStatus
			json.Unmarshal(m.Payload(), &st)
			ch <- got{m.Topic(), st}
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", d.RegID, tok.Error())
		}
		clients[d.RegID] = c
	}
	var wg sync.WaitGroup
	for id, c := range clients {
		wg.Go(func() {
			for i := range rounds {
				c.Publish(fmt.Sprintf("$dps/registrations/PUT/iotdps-register/?$rid=%s-reg-%d", id, i), 1, false, `{"registrationId":"`+id+`"}`).Wait()
				c.Publish(fmt.Sprintf("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=%s-poll-%d&operationId=5.0.none", id, i), 1, false, " ").Wait()
			}
		})
	}
	wg.Wait()
	for id, ch := range inbox {
		for range 2 * rounds {
			select {
			case g := <-ch:
				rid := g.topic[strings.Index(g.topic, "$rid=")+len("$rid="):]
				if !strings.HasPrefix(rid, id+"-") {
					t.Errorf("%s received %s", id, g.topic)
				}
				answered := strings.HasPrefix(g.topic, "$dps/registrations/res/200/") || strings.HasPrefix(g.topic, "$dps/registrations/res/202/")
				if rs := g.st.RegistrationState; answered && (rs == nil || rs.RegistrationID != id) {
					t.Errorf("%s received a registration state of %+v on %s", id, rs, g.topic)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: a response is missing", id)
			}
		}
		select {
		case g := <-ch:
			t.Errorf("%s received an extra response %s", id, g.topic)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
