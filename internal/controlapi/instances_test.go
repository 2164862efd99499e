package controlapi

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct{ name, auth string }{
		{"none", ""},
		{"wrong token", "Bearer nope"},
		{"prefix of token", "Bearer " + testToken[:5]},
		{"token plus", "Bearer " + testToken + "x"},
		{"wrong scheme", "Basic " + testToken},
		{"bare token", testToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/opendps/health", "/opendps/regions", armPath("x"), "/nowhere"} {
				st, h, body := e.raw(http.MethodGet, path, "", "Authorization", tt.auth)
				wantStatus(t, st, http.StatusUnauthorized, body)
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
				}
			}
		})
	}
	st, _, body := e.raw(http.MethodGet, "/opendps/health", "", "Authorization", "bearer "+testToken)
	wantStatus(t, st, http.StatusOK, body)
	if err := e.ctl.Health(context.Background()); err != nil {
		t.Fatal(err)
	}
	regs, err := e.ctl.Regions(context.Background())
	if err != nil || len(regs) < 40 {
		t.Fatalf("Regions = %d, %v", len(regs), err)
	}
	if _, err := New(Config{Manager: nil}); err == nil {
		t.Error("New without Manager succeeded")
	}
}

func TestInstanceLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc, err := e.ctl.CreateInstance(ctx, "Life-Cycle", dpsclient.InstanceSpec{Location: "westeurope", Tags: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	p := svc.Properties
	if svc.ID != armPath("life-cycle") || svc.Name != "life-cycle" || svc.Type != "Microsoft.Devices/provisioningServices" ||
		svc.SKU != (dpsclient.SKU{Name: "S1", Tier: "Standard", Capacity: 1}) || svc.Etag == "" || svc.Tags["team"] != "a" {
		t.Errorf("resource = %+v", svc)
	}
	if !regexp.MustCompile(`^0ne[0-9A-F]{8}$`).MatchString(p.IDScope) || p.State != "Active" || p.ProvisioningState != "Succeeded" ||
		p.AllocationPolicy != "Hashed" || p.ServiceOperationsHostName != "life-cycle.localhost:8443" ||
		p.DeviceProvisioningHostName != "localhost:8443" || p.SecondaryLocation != "northeurope" || p.DisasterRecovery != "enabled" {
		t.Errorf("properties = %+v", p)
	}
	if len(p.AuthorizationPolicies) != 1 || p.AuthorizationPolicies[0].PrimaryKey != "" || p.AuthorizationPolicies[0].KeyName != "provisioningserviceowner" {
		t.Errorf("GET must omit keys: %+v", p.AuthorizationPolicies)
	}
	_, err = e.ctl.CreateInstance(ctx, "life-cycle", dpsclient.InstanceSpec{Location: "westeurope"})
	wantAPIStatus(t, err, http.StatusPreconditionFailed)

	got, err := e.ctl.GetInstance(ctx, "LIFE-CYCLE")
	if err != nil || got.Etag != svc.Etag || got.Properties.IDScope != p.IDScope {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	keys, err := e.ctl.ListKeys(ctx, "life-cycle")
	if err != nil || len(keys) != 1 || keys[0].PrimaryKey == "" || keys[0].SecondaryKey == "" {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	k, err := e.ctl.GetKeys(ctx, "life-cycle", "ProvisioningServiceOwner")
	if err != nil || *k != keys[0] {
		t.Errorf("GetKeys = %+v, %v", k, err)
	}
	_, err = e.ctl.GetKeys(ctx, "life-cycle", "nobody")
	wantAPIStatus(t, err, http.StatusNotFound)

	list, err := e.ctl.ListInstances(ctx, true)
	if err != nil || !containsName(list, "life-cycle") {
		t.Errorf("ListInstances(rg) = %v, %v", list, err)
	}
	other := dpsclient.NewControl(e.srv.URL, testToken, e.srv.Client())
	other.ResourceGroup = "elsewhere"
	if list, _ := other.ListInstances(ctx, true); containsName(list, "life-cycle") {
		t.Error("instance listed in another resource group")
	}
	_, err = other.GetInstance(ctx, "life-cycle")
	wantAPIStatus(t, err, http.StatusNotFound)
	_, _, err = other.PutInstance(ctx, "life-cycle", dpsclient.InstanceSpec{Location: "westeurope"}, "")
	wantAPIStatus(t, err, http.StatusConflict)

	tagged, err := e.ctl.UpdateTags(ctx, "life-cycle", map[string]string{"team": "b"})
	if err != nil || tagged.Tags["team"] != "b" || tagged.Etag == svc.Etag {
		t.Errorf("UpdateTags = %+v, %v", tagged, err)
	}
	wantAPIStatus(t, e.ctl.DeleteInstance(ctx, "life-cycle", `"stale"`), http.StatusPreconditionFailed)
	if err := e.ctl.DeleteInstance(ctx, "life-cycle", tagged.Etag); err != nil {
		t.Fatal(err)
	}
	_, err = e.ctl.GetInstance(ctx, "life-cycle")
	wantAPIStatus(t, err, http.StatusNotFound)
	wantAPIStatus(t, e.ctl.DeleteInstance(ctx, "life-cycle", ""), http.StatusNotFound)
}

func containsName(list []dpsclient.ProvisioningService, name string) bool {
	for _, s := range list {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestARMShapes sends what the ARM SDK sends: case-varied paths, a GET
// round-tripped into a PUT, the name availability check.
func TestARMShapes(t *testing.T) {
	e := newEnv(t)
	body := `{"location":"westeurope","sku":{"name":"S1","capacity":1},"tags":{},"properties":{"allocationPolicy":"Hashed"}}`
	upper := strings.ToUpper(armPath("")) + "arm-shapes?api-version=2021-10-15"
	st, h, res := e.raw(http.MethodPut, upper, body)
	wantStatus(t, st, http.StatusCreated, res)
	if h.Get("ETag") != `"`+res["etag"].(string)+`"` {
		t.Errorf("ETag header %q, body etag %v", h.Get("ETag"), res["etag"])
	}
	// Round trip: the GET body PUT back changes nothing.
	st, _, got := e.raw(http.MethodGet, armPath("arm-shapes"), "")
	wantStatus(t, st, http.StatusOK, got)
	rt := mustJSON(t, got)
	st, _, again := e.raw(http.MethodPut, armPath("arm-shapes"), rt)
	wantStatus(t, st, http.StatusOK, again)
	if again["etag"] != res["etag"] {
		t.Errorf("round-trip PUT changed the etag: %v -> %v", res["etag"], again["etag"])
	}
	for _, tt := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"no api-version", http.MethodGet, armPath("arm-shapes") + "?x=1", "", http.StatusBadRequest},
		{"bad api-version", http.MethodGet, armPath("arm-shapes") + "?api-version=latest", "", http.StatusBadRequest},
		{"sku", http.MethodPut, armPath("arm-shapes"), `{"location":"westeurope","sku":{"name":"S2"}}`, http.StatusBadRequest},
		{"skus", http.MethodPost, armPath("arm-shapes", "skus"), "", http.StatusMethodNotAllowed},
		{"unknown", http.MethodGet, armPath("arm-shapes", "nothing"), "", http.StatusNotFound},
		{"operation", http.MethodGet, armPath("arm-shapes", "operationresults", "op1") + "?api-version=2022-02-05&asyncinfo=true", "", http.StatusOK},
		{"skus ok", http.MethodGet, armPath("arm-shapes", "skus"), "", http.StatusOK},
		{"list by sub", http.MethodGet, "/subscriptions/" + dpsclient.DefaultSubscription + "/providers/Microsoft.Devices/provisioningServices", "", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _, b := e.raw(tt.method, tt.path, tt.body)
			wantStatus(t, st, tt.status, b)
		})
	}
	ctx := context.Background()
	for name, want := range map[string]string{"arm-shapes": "AlreadyExists", "-x": "Invalid", "arm-free": ""} {
		a, err := e.ctl.CheckNameAvailability(ctx, name)
		if err != nil || a.Reason != want || a.NameAvailable != (want == "") {
			t.Errorf("CheckNameAvailability(%q) = %+v, %v", name, a, err)
		}
	}
}

func TestResidencyAndImmutability(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	yes := true
	svc, err := e.ctl.CreateInstance(ctx, "residency-br", dpsclient.InstanceSpec{Location: "brazilsouth", EnableDataResidency: &yes})
	if err != nil {
		t.Fatal(err)
	}
	if !svc.Properties.EnableDataResidency || svc.Properties.DisasterRecovery != "disabled" || svc.Properties.SecondaryLocation != "" {
		t.Errorf("residency instance: %+v", svc.Properties)
	}
	_, err = e.ctl.CreateInstance(ctx, "residency-we", dpsclient.InstanceSpec{Location: "westeurope", EnableDataResidency: &yes})
	msg := wantAPIStatus(t, err, http.StatusBadRequest)
	if !strings.Contains(msg, "Brazil South") || !strings.Contains(msg, "westeurope") {
		t.Errorf("residency refusal message %q does not explain", msg)
	}
	no := false
	for _, spec := range []dpsclient.InstanceSpec{{Location: "southcentralus"}, {EnableDataResidency: &no}} {
		_, _, err = e.ctl.PutInstance(ctx, "residency-br", spec, "")
		wantAPIStatus(t, err, http.StatusBadRequest)
	}
}

func TestInvalidNames(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"ab", "-abc", "abc-", "12345", "a_bc", "a.bc", strings.Repeat("a", 51), "%C3%A9abc"} {
		st, _, b := e.raw(http.MethodPut, armPath(name), `{"location":"westeurope"}`)
		wantStatus(t, st, http.StatusBadRequest, b)
	}
}
