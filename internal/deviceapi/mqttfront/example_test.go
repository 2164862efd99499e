package mqttfront_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// quickEngine assigns every device at once (the engine's fast path).
type quickEngine struct{}

func (quickEngine) Authenticate(context.Context, *engine.Request) error { return nil }

func (quickEngine) Register(_ context.Context, req *engine.Request) (*engine.Result, error) {
	return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "5.abc.1234", Status: model.OpStatusAssigned,
		RegistrationState: &model.DeviceRegistrationResult{RegistrationID: req.RegistrationID, DeviceID: req.RegistrationID,
			AssignedHub: "hub1.example.net", Status: model.OpStatusAssigned}}}, nil
}

func (quickEngine) OperationStatus(ctx context.Context, req *engine.Request, _ string) (*engine.Result, error) {
	return quickEngine{}.Register(ctx, req)
}

func (quickEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return nil, nil
}

// A device connects over MQTT with TLS, subscribes to the response
// filter and registers; the answer comes on its response topic with the
// request's $rid. In production the engine is *engine.Engine and the
// WebSocket handler is mounted on the HTTPS device listener too
// (IsWebSocketRequest, ServeWebSocket).
func Example() {
	ca, _ := pki.NewCA("example")
	cert, _ := ca.Issue([]string{"localhost"}, time.Hour)
	srv, err := mqttfront.New(mqttfront.Config{Engine: quickEngine{},
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)

	got := make(chan paho.Message, 1)
	dev := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + ln.Addr().String()).
		SetTLSConfig(&tls.Config{RootCAs: ca.CertPool(), ServerName: "localhost"}).SetProtocolVersion(4).
		SetClientID("dev1").SetUsername("0ne00000001/registrations/dev1/api-version=2019-03-31").
		SetPassword("SharedAccessSignature sr=0ne00000001/registrations/dev1&sig=...&se=1795644900"))
	dev.Connect().Wait()
	defer dev.Disconnect(50)
	dev.Subscribe(mqttfront.ResponseFilter, 1, func(_ paho.Client, m paho.Message) { got <- m }).Wait()
	dev.Publish("$dps/registrations/PUT/iotdps-register/?$rid=42", 1, false, `{"registrationId":"dev1"}`).Wait()
	m := <-got
	fmt.Println(m.Topic())
	fmt.Println(string(m.Payload()))
	// Output:
	// $dps/registrations/res/200/?$rid=42
	// {"operationId":"5.abc.1234","status":"assigned","registrationState":{"registrationId":"dev1","assignedHub":"hub1.example.net","deviceId":"dev1","status":"assigned"}}
}
