package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// deployFixture serves the control API with deployment records over a
// fresh store (hub checks always pass) and returns the global flags.
func deployFixture(t *testing.T) []string {
	t.Helper()
	return append(controlFlags(t, serveControl(t, true)), "--resource-group", "cli-rg", "--location", "westeurope")
}

const cliTemplate = `{
  "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "hub": {"type": "securestring"},
    "policy": {"type": "string", "defaultValue": "Hashed"},
    "residency": {"type": "bool", "defaultValue": false}
  },
  "resources": [{
    "type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05",
    "name": "cli-deployed", "location": "[resourceGroup().location]", "sku": {"name": "S1", "capacity": 1},
    "properties": {"allocationPolicy": "[parameters('policy')]", "enableDataResidency": "[parameters('residency')]",
      "iotHubs": [{"connectionString": "[parameters('hub')]"}]}
  }],
  "outputs": {"idScope": {"type": "string", "value": "[reference('cli-deployed').idScope]"}}
}`

func TestDeploymentCLI(t *testing.T) {
	g := deployFixture(t)
	dir := t.TempDir()
	tpl := filepath.Join(dir, "cli-dps.json")
	params := filepath.Join(dir, "cli-dps.parameters.json")
	os.WriteFile(tpl, []byte(cliTemplate), 0o600)
	os.WriteFile(params, []byte(`{"parameters": {"hub": {"value": "HostName=hub1.localhost:9;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5a2V5a2V5"}}}`), 0o600)
	deploy := func(verb string, extra ...string) []string {
		return append([]string{"deployment", verb, "--template-file", tpl, "--parameters", "@" + params}, extra...)
	}

	if out := mustRun(t, g, deploy("validate")...); !strings.Contains(out, "valid: 1 resource(s)") {
		t.Errorf("validate:\n%s", out)
	}
	if out := mustRun(t, g, deploy("what-if")...); !strings.Contains(out, "+ Create   Microsoft.Devices/provisioningServices cli-deployed") ||
		!strings.Contains(out, `properties.allocationPolicy: "Hashed"`) || !strings.Contains(out, "1 to create, 0 to modify, 0 unchanged") {
		t.Errorf("what-if before create:\n%s", out)
	}
	out := mustRun(t, g, deploy("create")...)
	if !regexp.MustCompile(`(?m)^state:\s+Succeeded$`).MatchString(out) ||
		!strings.Contains(out, "Microsoft.Devices/provisioningServices cli-deployed: created") || !strings.Contains(out, "output idScope:") {
		t.Errorf("create:\n%s", out)
	}
	if out := mustRun(t, g, deploy("create")...); !strings.Contains(out, "cli-deployed: unchanged") {
		t.Errorf("second create:\n%s", out)
	}
	out = mustRun(t, g, deploy("what-if", "-p", "policy=GeoLatency")...)
	if !strings.Contains(out, "~ Modify") || !strings.Contains(out, `properties.allocationPolicy: "Hashed" => "GeoLatency"`) {
		t.Errorf("what-if of a change:\n%s", out)
	}
	if out := mustRun(t, g, deploy("create", "-p", "policy=GeoLatency")...); !strings.Contains(out, "cli-deployed: modified") {
		t.Errorf("create of a change:\n%s", out)
	}

	// Immutable after creation: refused at preflight, recorded, nothing changed.
	if _, err := run(t, g, deploy("create", "-p", "residency=true", "--name", "flip")...); err == nil {
		t.Error("create flipping enableDataResidency succeeded")
	}
	var rec dpsclient.Deployment
	if err := json.Unmarshal([]byte(mustRun(t, g, "deployment", "show", "flip", "--json")), &rec); err != nil {
		t.Fatal(err)
	}
	if e := rec.Properties.Error; rec.Properties.ProvisioningState != "Failed" || e == nil || len(e.Details) != 1 ||
		e.Details[0].Target != "resources[0].properties.enableDataResidency" {
		t.Errorf("record of the refused deployment: %+v", rec.Properties)
	}

	out = mustRun(t, g, "deployment", "list")
	if !strings.Contains(out, "cli-dps") || !strings.Contains(out, "1 modified") || !strings.Contains(out, "flip") || !strings.Contains(out, "InvalidTemplateDeployment") {
		t.Errorf("list:\n%s", out)
	}
	var list []dpsclient.Deployment
	if err := json.Unmarshal([]byte(mustRun(t, g, "deployment", "list", "--json")), &list); err != nil || len(list) != 2 || list[0].Name != "flip" {
		t.Errorf("list --json (newest first): %+v %v", list, err)
	}
	if err := json.Unmarshal([]byte(mustRun(t, g, "deployment", "show", "cli-dps", "--json")), &rec); err != nil {
		t.Fatal(err)
	}
	p := rec.Properties
	if p.ProvisioningState != "Succeeded" || p.Parameters["hub"].Value != nil || p.Parameters["policy"].Value != "GeoLatency" ||
		p.Outputs["idScope"].Value == "" || len(p.ResourceChanges) != 1 || p.ResourceChanges[0].Outcome != "modified" {
		t.Errorf("show cli-dps: %+v", p)
	}
}
