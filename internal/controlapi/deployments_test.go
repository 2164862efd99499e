package controlapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// newDeployEnv is newEnv with deployment records kept.
func newDeployEnv(t *testing.T) *env {
	t.Helper()
	cat := regions.Builtin()
	st := shared.Store(t)
	m, err := instance.New(instance.Config{Store: st, Catalog: cat, ServiceDomain: "localhost:8443", DeviceHost: "localhost:8443", HubChecker: failingHubs})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Manager: m, Catalog: cat, Token: testToken, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, ctl: dpsclient.NewControl(srv.URL, testToken, srv.Client())}
}

// TestDeploymentRecords: the server owns ids and times (a run keeps its
// start across its writes; a finished run has a duration), lists newest
// first per resource group, and refuses bad states and names.
func TestDeploymentRecords(t *testing.T) {
	ctx := context.Background()
	e := newDeployEnv(t)
	c := *e.ctl
	c.ResourceGroup = "records-rg"
	run := &dpsclient.Deployment{Properties: dpsclient.DeploymentProperties{ProvisioningState: "Running", CorrelationID: "run-1",
		Parameters: map[string]dpsclient.DeploymentValue{"p": {Type: "string", Value: "v"}}}}
	first, err := c.PutDeployment(ctx, "dep-a", run)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != "/subscriptions/"+dpsclient.DefaultSubscription+"/resourceGroups/records-rg/providers/Microsoft.Resources/deployments/dep-a" ||
		first.Type != "Microsoft.Resources/deployments" || first.Properties.StartTime.IsZero() || first.Properties.Duration != "" {
		t.Errorf("running record: %+v", first)
	}
	time.Sleep(5 * time.Millisecond)
	run.Properties.ProvisioningState = "Succeeded"
	done, err := c.PutDeployment(ctx, "dep-a", run)
	if err != nil {
		t.Fatal(err)
	}
	if !done.Properties.StartTime.Equal(first.Properties.StartTime) || !done.Properties.Timestamp.After(first.Properties.Timestamp) || done.Properties.Duration == "" {
		t.Errorf("finished record: start %v (first %v), timestamp %v, duration %q", done.Properties.StartTime, first.Properties.StartTime, done.Properties.Timestamp, done.Properties.Duration)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := c.PutDeployment(ctx, "dep-b", &dpsclient.Deployment{Properties: dpsclient.DeploymentProperties{ProvisioningState: "Failed",
		Error: &dpsclient.DeploymentError{Code: "InvalidTemplate", Message: "m", Target: "resources[0].name"}}}); err != nil {
		t.Fatal(err)
	}
	list, err := c.ListDeployments(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "dep-b" || list[1].Name != "dep-a" || list[0].Properties.Error.Target != "resources[0].name" {
		t.Fatalf("list: %+v %v", list, err)
	}
	got, err := c.GetDeployment(ctx, "DEP-A") // names are case-insensitive
	if err != nil || got.Properties.Parameters["p"].Value != "v" {
		t.Errorf("get: %+v %v", got, err)
	}
	other := *e.ctl
	other.ResourceGroup = "another-rg"
	if l, err := other.ListDeployments(ctx); err != nil || len(l) != 0 {
		t.Errorf("another resource group lists %v %v", l, err)
	}
	if _, err := c.PutDeployment(ctx, "dep-c", &dpsclient.Deployment{Properties: dpsclient.DeploymentProperties{ProvisioningState: "Done"}}); err == nil {
		t.Error("a record in state Done was accepted")
	} else {
		wantAPIStatus(t, err, http.StatusBadRequest)
	}
	status, _, body := e.raw(http.MethodPut, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Resources/deployments/bad%2Fname",
		`{"properties": {"provisioningState": "Running"}}`)
	wantStatus(t, status, http.StatusBadRequest, body)
	if err := c.DeleteDeployment(ctx, "dep-a"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetDeployment(ctx, "dep-a")
	wantAPIStatus(t, err, http.StatusNotFound)
}

// TestDeploymentListNewest: a list longer than the bound keeps the newest
// records, whatever their names (keys are in name order).
func TestDeploymentListNewest(t *testing.T) {
	old := maxDeploymentsList
	maxDeploymentsList = 2
	t.Cleanup(func() { maxDeploymentsList = old })
	ctx := context.Background()
	e := newDeployEnv(t)
	c := *e.ctl
	c.ResourceGroup = "newest-rg"
	for _, name := range []string{"c", "b", "a"} { // the newest sorts first
		if _, err := c.PutDeployment(ctx, name, &dpsclient.Deployment{Properties: dpsclient.DeploymentProperties{ProvisioningState: "Succeeded"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	list, err := c.ListDeployments(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "a" || list[1].Name != "b" {
		t.Fatalf("list: %+v %v, want a then b", list, err)
	}
}

func TestDeploymentRecordsNeedAStore(t *testing.T) {
	e := newEnv(t)
	_, err := e.ctl.ListDeployments(context.Background())
	wantAPIStatus(t, err, http.StatusNotFound)
}
