package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/internal/armtemplate"
	armdeploy "github.com/opendps/opendps/internal/deployment"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// deployRG is the resource group the deployment tests use.
const deployRG = "deploy-e2e"

// example is one template of docs/examples with what it must deploy.
type example struct {
	file          string
	location      string
	residency     bool
	drState       string // properties.disasterRecovery
	certificates  []string
	hubWeights    [2]int // allocationWeight of the simulator's hubs 1 and 2
	wantResources int
}

var examples = []example{
	{file: "dps-dr-westeurope", location: "westeurope", drState: "enabled", hubWeights: [2]int{1, 2}, wantResources: 1},
	{file: "dps-residency-brazilsouth", location: "brazilsouth", residency: true, drState: "disabled",
		certificates: []string{"devices-ca"}, hubWeights: [2]int{1, 1}, wantResources: 2},
}

// deployedInstance is what test/node/deploy.test.js checks.
type deployedInstance struct {
	Subscription        string   `json:"subscription"`
	ResourceGroup       string   `json:"resourceGroup"`
	Name                string   `json:"name"`
	Location            string   `json:"location"`
	IDScope             string   `json:"idScope"`
	EnableDataResidency bool     `json:"enableDataResidency"`
	Hubs                []string `json:"hubs"`
	Certificates        []string `json:"certificates"`
}

// TestDeployExamples deploys each template of docs/examples to a real node
// (one zone; it hosts westeurope and brazilsouth) with the dev hub
// simulator's hubs linked, reads the instances back through the control
// API and the official ARM client, checks enableDataResidency, the linked
// hubs, the certificate and the outputs, deploys again and sees every
// resource unchanged, and sees templates asking for data residency in West
// Europe or using an unknown function refused at validation with nothing
// created.
func TestDeployExamples(t *testing.T) {
	ctx := context.Background()
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()
	if len(e.conn.Hubs) < 2 {
		t.Fatalf("the dev deployment has %d hubs, want 2", len(e.conn.Hubs))
	}
	ctl := *e.ctl
	ctl.ResourceGroup = deployRG
	cat := serverCatalog(t, &ctl)

	var deployed []deployedInstance
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			deployed = append(deployed, deployExample(t, e, &ctl, cat, ex))
		})
	}
	if t.Failed() {
		return
	}
	checkRecords(t, &ctl)
	if _, err := os.Stat(filepath.Join(nodetest.Dir(t), "node_modules", "@azure", "arm-deviceprovisioningservices")); err != nil {
		t.Fatalf("the ARM client is not installed in test/node: %v", err)
	}
	want, _ := json.Marshal(deployed)
	nodetest.Run(t, "deploy.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS": e.conn.CACertificate,
		"ARM_ENDPOINT":        e.conn.ControlEndpoint,
		"OPERATOR_TOKEN":      e.conn.OperatorToken,
		"DEPLOYED":            string(want),
	})

	before, err := ctl.ListInstances(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	refuseAtValidation(t, &ctl, cat, "residency-westeurope", residencyInWestEurope, armtemplate.ErrRefused,
		"resources[0].properties.enableDataResidency", "Brazil South")
	refuseAtValidation(t, &ctl, cat, "unknown-function", unknownFunction, armtemplate.ErrUnsupported,
		"resources[0].name", `unknown function "newGuid"`)
	after, err := ctl.ListInstances(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("instances after the refused templates: %d, before: %d", len(after), len(before))
	}
	for _, name := range []string{"dps-residency-we", "dps-unknown-fn"} {
		if _, err := ctl.GetInstance(ctx, name); !isNotFound(err) {
			t.Errorf("instance %s after a refused template: %v, want 404", name, err)
		}
	}
}

func serverCatalog(t *testing.T, ctl *dpsclient.Control) armtemplate.Regions {
	t.Helper()
	list, err := ctl.Regions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs := make([]regions.Region, len(list))
	for i, r := range list {
		rs[i] = regions.Region{Name: r.Name, DisplayName: r.DisplayName, PairedRegion: r.PairedRegion, DataResidencyAllowed: r.DataResidencyAllowed}
	}
	return armtemplate.CatalogOf(rs)
}

// buildExample builds the plan of an example with its parameters file and
// the simulator's hub connection strings.
func buildExample(t *testing.T, e *deployment, ctl *dpsclient.Control, cat armtemplate.Regions, ex example) *armtemplate.Plan {
	t.Helper()
	dir := filepath.Join("..", "docs", "examples")
	data, err := os.ReadFile(filepath.Join(dir, ex.file+".json"))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := armtemplate.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	var params armtemplate.Params
	pf := filepath.Join(dir, ex.file+".parameters.json")
	pdata, err := os.ReadFile(pf)
	if err != nil {
		t.Fatal(err)
	}
	if err := params.AddFile(pf, pdata); err != nil {
		t.Fatal(err)
	}
	params.Set("hub1ConnectionString", e.conn.Hubs[0].ConnectionString)
	params.Set("hub2ConnectionString", e.conn.Hubs[1].ConnectionString)
	scope := armtemplate.Scope{Subscription: ctl.Subscription, ResourceGroup: ctl.ResourceGroup, Location: "westeurope"}
	plan, err := armtemplate.Build(tpl, params, armtemplate.Options{Scope: scope, Regions: cat})
	if err != nil {
		t.Fatalf("%s does not validate:\n%v", ex.file, err)
	}
	return plan
}

func deployExample(t *testing.T, e *deployment, ctl *dpsclient.Control, cat armtemplate.Regions, ex example) deployedInstance {
	ctx := context.Background()
	plan := buildExample(t, e, ctl, cat, ex)
	if len(plan.Resources) != ex.wantResources {
		t.Fatalf("plan has %d resources, want %d", len(plan.Resources), ex.wantResources)
	}
	if plan.Resources[0].Type != armtemplate.TypeProvisioningService {
		t.Errorf("first resource to deploy: %s, want the instance (dependsOn)", plan.Resources[0].Type)
	}
	changes, err := armdeploy.WhatIf(ctx, ctl, plan)
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, "what-if before the first deployment", changes, armdeploy.ChangeCreate, "")

	rec, err := armdeploy.Create(ctx, ctl, ex.file, plan, nil)
	if err != nil {
		t.Fatalf("deploy: %v (record: %+v)", err, rec)
	}
	checkChanges(t, "first deployment", rec.Properties.ResourceChanges, armdeploy.ChangeCreate, armdeploy.OutcomeCreated)
	name, _ := rec.Properties.Outputs["name"].Value.(string)
	in, err := ctl.GetInstance(ctx, name)
	if err != nil {
		t.Fatalf("instance %q of the outputs: %v", name, err)
	}
	p := in.Properties
	if in.Location != ex.location || p.EnableDataResidency != ex.residency || p.DisasterRecovery != ex.drState {
		t.Errorf("instance %s: location %s, enableDataResidency %t, disasterRecovery %s; want %s, %t, %s",
			name, in.Location, p.EnableDataResidency, p.DisasterRecovery, ex.location, ex.residency, ex.drState)
	}
	checkHubs(t, e, in, ex.hubWeights)
	checkOutputs(t, rec, in)
	for _, c := range ex.certificates {
		cert, err := ctl.GetCertificate(ctx, name, c)
		if err != nil || !cert.Properties.IsVerified {
			t.Errorf("certificate %s: %+v %v, want verified", c, cert, err)
		}
	}

	// Idempotent: the same template again changes nothing.
	changes, err = armdeploy.WhatIf(ctx, ctl, plan)
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, "what-if after the deployment", changes, armdeploy.ChangeNoChange, "")
	again, err := armdeploy.Create(ctx, ctl, ex.file, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, "second deployment", again.Properties.ResourceChanges, armdeploy.ChangeNoChange, armdeploy.OutcomeUnchanged)
	if in2, err := ctl.GetInstance(ctx, name); err != nil || in2.Etag != in.Etag {
		t.Errorf("etag after the second deployment: %v %v, want %s (unchanged)", in2.Etag, err, in.Etag)
	}
	hubs := make([]string, 0, len(p.IotHubs))
	for _, h := range p.IotHubs {
		hubs = append(hubs, h.Name)
	}
	return deployedInstance{Subscription: ctl.Subscription, ResourceGroup: ctl.ResourceGroup, Name: name, Location: ex.location,
		IDScope: p.IDScope, EnableDataResidency: ex.residency, Hubs: hubs, Certificates: append([]string{}, ex.certificates...)}
}

func checkChanges(t *testing.T, what string, changes []dpsclient.DeploymentResourceChange, change, outcome string) {
	t.Helper()
	if len(changes) == 0 {
		t.Errorf("%s: no resources", what)
	}
	for _, ch := range changes {
		if ch.ChangeType != change || ch.Outcome != outcome {
			t.Errorf("%s: %s %s: %s/%s, want %s/%s (delta %+v)", what, ch.ResourceType, ch.Name, ch.ChangeType, ch.Outcome, change, outcome, ch.Delta)
		}
	}
}

// checkHubs: both simulated hubs are linked, with the weight the template
// gives (the DR example weighs hub 2 by 2).
func checkHubs(t *testing.T, e *deployment, in *dpsclient.ProvisioningService, weights [2]int) {
	t.Helper()
	got := map[string]dpsclient.IotHub{}
	for _, h := range in.Properties.IotHubs {
		got[strings.ToLower(h.Name)] = h
	}
	for i, h := range e.conn.Hubs[:2] {
		if l, ok := got[strings.ToLower(h.HostName)]; !ok {
			t.Errorf("instance %s: hub %s not linked (linked: %v)", in.Name, h.HostName, in.Properties.IotHubs)
		} else if l.AllocationWeight != weights[i] {
			t.Errorf("instance %s: hub %s has allocationWeight %d, want %d", in.Name, h.HostName, l.AllocationWeight, weights[i])
		}
	}
	if len(got) != 2 {
		t.Errorf("instance %s: %d hubs linked, want 2", in.Name, len(got))
	}
}

func checkOutputs(t *testing.T, rec *dpsclient.Deployment, in *dpsclient.ProvisioningService) {
	t.Helper()
	o := rec.Properties.Outputs
	for k, want := range map[string]string{"idScope": in.Properties.IDScope, "serviceEndpoint": in.Properties.ServiceOperationsHostName,
		"deviceEndpoint": in.Properties.DeviceProvisioningHostName} {
		if got, _ := o[k].Value.(string); got != want || got == "" {
			t.Errorf("output %s = %q, want %q", k, got, want)
		}
	}
	for name, p := range rec.Properties.Parameters {
		if strings.HasPrefix(name, "hub") && strings.HasSuffix(name, "ConnectionString") && p.Value != nil {
			t.Errorf("the record keeps secure parameter %s: %v", name, p.Value)
		}
	}
}

// checkRecords: both deployments are listed, succeeded, with times.
func checkRecords(t *testing.T, ctl *dpsclient.Control) {
	t.Helper()
	list, err := ctl.ListDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range list {
		seen[d.Name] = true
		p := d.Properties
		if p.ProvisioningState != dpsclient.DeploymentSucceeded || p.Timestamp.IsZero() || p.StartTime.IsZero() || p.Duration == "" {
			t.Errorf("record %s: %s, timestamp %v, start %v, duration %q", d.Name, p.ProvisioningState, p.Timestamp, p.StartTime, p.Duration)
		}
	}
	for _, ex := range examples {
		if !seen[ex.file] {
			t.Errorf("deployment %s is not listed (listed: %v)", ex.file, seen)
		}
	}
}

// refuseAtValidation: the template does not validate, with an error of
// kind at path whose message contains msg; the failure is recorded with
// that path and nothing else.
func refuseAtValidation(t *testing.T, ctl *dpsclient.Control, cat armtemplate.Regions, name, tplText string, kind error, path, msg string) {
	t.Helper()
	ctx := context.Background()
	tpl, err := armtemplate.Parse([]byte(tplText))
	if err != nil {
		t.Fatal(err)
	}
	scope := armtemplate.Scope{Subscription: ctl.Subscription, ResourceGroup: ctl.ResourceGroup, Location: "westeurope"}
	_, err = armtemplate.Build(tpl, armtemplate.Params{}, armtemplate.Options{Scope: scope, Regions: cat})
	var es armtemplate.Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != path || !errors.Is(es[0], kind) || !strings.Contains(es[0].Msg, msg) {
		t.Fatalf("%s: validation error %v, want one %v at %s saying %q", name, err, kind, path, msg)
	}
	rec, err := armdeploy.RecordFailure(ctx, ctl, name, scope, tpl.Hash, err)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ctl.GetDeployment(ctx, name)
	if err != nil || got.Properties.ProvisioningState != dpsclient.DeploymentFailed || got.Properties.Error == nil ||
		len(got.Properties.Error.Details) != 1 || got.Properties.Error.Details[0].Target != path || len(got.Properties.ResourceChanges) != 0 {
		t.Errorf("%s: record %+v %v (put: %+v)", name, got, err, rec)
	}
}

func isNotFound(err error) bool {
	var ce *dpsclient.ControlError
	return errors.As(err, &ce) && ce.StatusCode == 404
}

const residencyInWestEurope = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [{
    "type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05",
    "name": "dps-residency-we", "location": "[resourceGroup().location]",
    "sku": {"name": "S1", "capacity": 1},
    "properties": {"enableDataResidency": true}
  }]
}`

const unknownFunction = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "resources": [{
    "type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05",
    "name": "[concat('dps-unknown-fn', newGuid())]", "location": "westeurope",
    "sku": {"name": "S1", "capacity": 1},
    "properties": {}
  }]
}`
