package httpfront_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/httpfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
	"github.com/prometheus/client_golang/prometheus"
)

// slowEngine answers every registration with "assigning".
type slowEngine struct{}

func (slowEngine) Authenticate(context.Context, *engine.Request) error { return nil }

func (slowEngine) Register(_ context.Context, req *engine.Request) (*engine.Result, error) {
	return &engine.Result{RetryAfter: 3, Status: &model.RegistrationOperationStatus{
		OperationID: "5.abc.1234", Status: model.OpStatusAssigning}}, nil
}

func (slowEngine) OperationStatus(context.Context, *engine.Request, string) (*engine.Result, error) {
	return nil, apierr.New(apierr.CodeNotFound, "Operation not found.")
}

func (slowEngine) RegistrationStatus(context.Context, *engine.Request) (*model.DeviceRegistrationResult, error) {
	return nil, apierr.New(apierr.CodeRegistrationMissing, "Registration not found.")
}

// A device registers: the handler answers 202 with Retry-After, Location
// and the operation status, adding the registrationState that clients
// need while assigning. In production the handler runs in an
// http.Server whose TLS config requests (not requires) client
// certificates: tls.Config{ClientAuth: tls.RequestClientCert}.
func Example() {
	h, err := httpfront.New(httpfront.Config{Engine: slowEngine{}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest("PUT", "https://dps.example.net/0ne00000001/registrations/dev1/register?api-version=2019-03-31",
		strings.NewReader(`{"registrationId":"dev1"}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Location"))
	fmt.Print(rec.Body)
	// Output:
	// 202 3 https://dps.example.net/0ne00000001/registrations/dev1/register
	// {"operationId":"5.abc.1234","status":"assigning","registrationState":{"registrationId":"dev1","status":"assigning"}}
}
