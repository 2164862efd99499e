package armtemplate

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/regions"
)

const hubCS = "HostName=hub1.localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5a2V5a2V5a2V5a2V5a2V5"

// doc wraps parameters, variables, resources and outputs in a template.
func doc(params, vars, resources, outputs string) string {
	return `{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
	"parameters": {` + params + `}, "variables": {` + vars + `}, "resources": [` + resources + `], "outputs": {` + outputs + `}}`
}

// dps is a provisioning service resource with the given extra members.
func dps(name, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return `{"type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05", "name": "` + name + `", "location": "westeurope", "sku": {"name": "S1", "capacity": 1}` + extra + `}`
}

func build(t *testing.T, text string, set map[string]string) (*Plan, error) {
	t.Helper()
	tpl, err := Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	var p Params
	for k, v := range set {
		p.Set(k, v)
	}
	return Build(tpl, p, Options{Scope: Scope{Subscription: "sub", ResourceGroup: "rg", Location: "westeurope"}, Regions: regions.Builtin()})
}

// TestValidationErrors: each template has one problem, reported with its
// JSON path, its kind and (for expressions) the expression.
func TestValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		name, tpl string
		set       map[string]string
		path      string
		kind      error
		msg, expr string
		more      bool // further errors follow from the same mistake
	}{
		{"unknown type", doc("", "", `{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2022-02-05", "name": "x"}`, ""),
			nil, "resources[0].type", ErrUnsupported, `"Microsoft.Storage/storageAccounts" is not supported`, "", false},
		{"unknown function", doc("", "", dps("[newGuid()]", ""), ""), nil, "resources[0].name", ErrUnsupported, `unknown function "newGuid"`, "[newGuid()]", false},
		{"bad expression", doc("", "", dps("[concat('a' 'b')]", ""), ""), nil, "resources[0].name", ErrInvalid, "syntax error", "[concat('a' 'b')]", false},
		{"hub connection string", doc(`"cs": {"type": "securestring", "defaultValue": "HostName=h"}`, "",
			dps("dps1", `"properties": {"iotHubs": [{"connectionString": "`+hubCS+`"}, {"connectionString": "[parameters('cs')]"}]}`), ""),
			nil, "resources[0].properties.iotHubs[1].connectionString", ErrInvalid, "a hub connection string must be", "", false},
		{"undeclared parameter in a hub", doc("", "", dps("dps1", `"properties": {"iotHubs": [{"connectionString": "[parameters('hub')]"}]}`), ""),
			nil, "resources[0].properties.iotHubs[0].connectionString", ErrInvalid, `parameter "hub" is not declared`, "[parameters('hub')]", false},
		{"residency in West Europe", doc("", "", dps("dps1", `"properties": {"enableDataResidency": true}`), ""),
			nil, "resources[0].properties.enableDataResidency", ErrRefused, "only allowed in regions that permit opting out of disaster recovery (Brazil South, Southeast Asia)", "", false},
		{"unknown region", doc("", "", strings.Replace(dps("dps1", ""), "westeurope", "atlantis", 1), ""),
			nil, "resources[0].location", ErrRefused, `"atlantis" is not a region`, "", false},
		{"sku", doc("", "", strings.Replace(dps("dps1", ""), `"S1"`, `"S2"`, 1), ""), nil, "resources[0].sku.name", ErrRefused, "the only SKU is S1", "", false},
		{"read-only property", doc("", "", dps("dps1", `"properties": {"idScope": "0ne00000001"}`), ""), nil, "resources[0].properties.idScope", ErrInvalid, "read-only", "", false},
		{"unsupported property", doc("", "", dps("dps1", `"properties": {"portalOperationsHostName": "x"}`), ""), nil, "resources[0].properties.portalOperationsHostName", ErrUnsupported, "not supported", "", false},
		{"allocation policy", doc("", "", dps("dps1", `"properties": {"allocationPolicy": "Random"}`), ""), nil, "resources[0].properties.allocationPolicy", ErrInvalid, "Hashed, GeoLatency, Static", "", false},
		{"hub weight", doc("", "", dps("dps1", `"properties": {"iotHubs": [{"connectionString": "`+hubCS+`", "allocationWeight": 0}]}`), ""),
			nil, "resources[0].properties.iotHubs[0].allocationWeight", ErrInvalid, "from 1 to 1000", "", false},
		{"duplicate hub", doc("", "", dps("dps1", `"properties": {"iotHubs": [{"connectionString": "`+hubCS+`"}, {"connectionString": "`+hubCS+`"}]}`), ""),
			nil, "resources[0].properties.iotHubs[1]", ErrInvalid, "already linked by resources[0].properties.iotHubs[0]", "", false},
		{"policy rights", doc("", "", dps("dps1", `"properties": {"authorizationPolicies": [{"keyName": "p", "rights": "Everything"}]}`), ""),
			nil, "resources[0].properties.authorizationPolicies[0].rights", ErrInvalid, "unknown right", "", false},
		{"instance name", doc("", "", dps("bad_name!", ""), ""), nil, "resources[0].name", ErrInvalid, "bad_name!", "", false},
		{"copy loop", doc("", "", dps("dps1", `"copy": {"name": "c", "count": 2}`), ""), nil, "resources[0].copy", ErrUnsupported, "copy loops", "", false},
		{"nested resources", doc("", "", dps("dps1", `"resources": []`), ""), nil, "resources[0].resources", ErrUnsupported, "nested child resources", "", false},
		{"type expression", doc("", "", `{"type": "[concat('Microsoft.Devices/', 'provisioningServices')]", "apiVersion": "2022-02-05", "name": "x"}`, ""),
			nil, "resources[0].type", ErrInvalid, "literal", "[concat('Microsoft.Devices/', 'provisioningServices')]", false},
		{"api version", doc("", "", strings.Replace(dps("dps1", ""), "2022-02-05", "latest", 1), ""), nil, "resources[0].apiVersion", ErrInvalid, "not a date", "", false},
		{"certificate name segments", doc("", "", `{"type": "Microsoft.Devices/provisioningServices/certificates", "apiVersion": "2022-02-05", "name": "ca", "properties": {"isVerified": true}}`, ""),
			nil, "resources[0].name", ErrInvalid, "2 segment(s)", "", true},
		{"certificate text", doc("", "", dps("dps1", "")+`, {"type": "Microsoft.Devices/provisioningServices/certificates", "apiVersion": "2022-02-05", "name": "dps1/ca", "properties": {"certificate": "not a cert"}}`, ""),
			nil, "resources[1].properties.certificate", ErrInvalid, "PEM or base64 DER", "", false},
		{"dependsOn unknown", doc("", "", dps("dps1", `"dependsOn": ["dps2"]`), ""), nil, "resources[0].dependsOn[0]", ErrInvalid, `"dps2" names no resource`, "", false},
		{"dependsOn cycle", doc("", "", dps("dps1", `"dependsOn": ["dps2"]`)+", "+dps("dps2", `"dependsOn": ["[resourceId('Microsoft.Devices/provisioningServices', 'dps1')]"]`), ""),
			nil, "resources[0].dependsOn", ErrInvalid, "dependency cycle: dps1 (resources[0]) -> dps2 (resources[1]) -> dps1", "", false},
		{"duplicate resource", doc("", "", dps("dps1", "")+", "+dps("DPS1", ""), ""), nil, "resources[1].name", ErrInvalid, "declared twice", "", false},
		{"parameter type", doc(`"n": {"type": "int"}`, "", dps("dps1", ""), ""), map[string]string{"n": "seven"}, "parameters.n", ErrInvalid, `"seven" is not an integer`, "", false},
		{"allowed values", doc(`"loc": {"type": "string", "allowedValues": ["brazilsouth"]}`, "", dps("dps1", ""), ""), map[string]string{"loc": "westeurope"},
			"parameters.loc", ErrInvalid, `not one of the allowedValues ["brazilsouth"]`, "", false},
		{"default of the wrong type", doc(`"b": {"type": "bool", "defaultValue": "yes"}`, "", dps("dps1", ""), ""), nil, "parameters.b", ErrInvalid, "the value is a string, but the parameter's type is bool", "", false},
		{"missing parameter", doc(`"cs": {"type": "securestring"}`, "", dps("dps1", ""), ""), nil, "parameters.cs", ErrInvalid, "no value and no defaultValue", "", false},
		{"undeclared parameter given", doc("", "", dps("dps1", ""), ""), map[string]string{"extra": "1"}, "parameters.extra", ErrInvalid, "does not declare", "", false},
		{"max length", doc(`"p": {"type": "string", "maxLength": 3}`, "", dps("dps1", ""), ""), map[string]string{"p": "abcd"}, "parameters.p", ErrInvalid, "greater than maxLength 3", "", false},
		{"variable error", doc("", `"v": "[toLower(1)]"`, dps("dps1", ""), ""), nil, "variables.v", ErrInvalid, "must be a string", "[toLower(1)]", false},
		{"reference outside outputs", doc("", "", dps("dps1", `"tags": {"scope": "[reference('dps1').idScope]"}`), ""), nil, "resources[0].tags.scope", ErrUnsupported, "only in outputs", "[reference('dps1').idScope]", false},
		{"output of another resource", doc("", "", dps("dps1", ""), `"s": {"type": "string", "value": "[reference('dps9').idScope]"}`), nil, "outputs.s.value", ErrUnsupported, "only resources deployed by this template", "", false},
		{"output property", doc("", "", dps("dps1", ""), `"s": {"type": "string", "value": "[reference('dps1').scopeId]"}`), nil, "outputs.s.value", ErrInvalid, `no property "scopeId"`, "", false},
		{"parameter declaration type", doc(`"p": {"type": "float"}`, "", dps("dps1", ""), ""), nil, "parameters.p.type", ErrInvalid, `type "float" is not a parameter type`, "", false},
		{"parameter declaration shape", doc(`"p": "string"`, "", dps("dps1", ""), ""), nil, "parameters.p", ErrInvalid, "a parameter declaration must be an object", "", false},
		{"output declaration type", doc("", "", dps("dps1", ""), `"s": {"type": "float", "value": 1}`), nil, "outputs.s.type", ErrInvalid, `type "float" is not an output type`, "", false},
		{"output declaration shape", doc("", "", dps("dps1", ""), `"s": "x"`), nil, "outputs.s", ErrInvalid, "an output must be an object", "", false},
		{"output type", doc("", "", dps("dps1", ""), `"s": {"type": "int", "value": "[reference('dps1').idScope]"}`), nil, "outputs.s.value", ErrInvalid, "output's type is int", "", false},
		{"user functions", strings.Replace(doc("", "", dps("dps1", ""), ""), `"resources"`, `"functions": [], "resources"`, 1), nil, "functions", ErrUnsupported, "user-defined functions", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, tc.tpl, tc.set)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %v, want Errors", err)
			}
			if len(es) != 1 && !(tc.more && len(es) > 1) {
				t.Fatalf("%d errors, want 1:\n%v", len(es), err)
			}
			e := es[0]
			if e.Path != tc.path || !errors.Is(e, tc.kind) || !strings.Contains(e.Msg, tc.msg) || (tc.expr != "" && e.Expr != tc.expr) {
				t.Errorf("got %v\n  path %q kind %v expr %q\nwant path %q kind %v containing %q expr %q", e, e.Path, e.Kind, e.Expr, tc.path, tc.kind, tc.msg, tc.expr)
			}
		})
	}
}

// TestEveryErrorAtOnce: validation reports all problems, not the first.
func TestEveryErrorAtOnce(t *testing.T) {
	tpl := doc(`"x": {"type": "int"}`, "", dps("[newGuid()]", `"properties": {"idScope": "1", "enableDataResidency": true}`), "")
	_, err := build(t, tpl, nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 4 {
		t.Fatalf("errors:\n%v\nwant 4 (parameter, name, idScope, residency)", err)
	}
}

func TestPlanOrderAndValues(t *testing.T) {
	certPEM := testCertPEM(t)
	tpl := doc(`"prefix": {"type": "string", "defaultValue": "Dps"}, "loc": {"type": "string", "defaultValue": "[resourceGroup().location]"}`,
		`"name": "[toLower(concat(parameters('prefix'), '-', uniqueString(resourceGroup().id)))]"`,
		`{"type": "Microsoft.Devices/provisioningServices/certificates", "apiVersion": "2022-02-05", "name": "[concat(variables('name'), '/ca')]", "properties": {"certificate": `+jsonString(certPEM)+`, "isVerified": true}},
		{"type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05", "name": "[variables('name')]", "location": "[parameters('loc')]", "tags": {"t": "[[x]"},
		 "properties": {"enableDataResidency": false, "allocationPolicy": "geolatency", "iotHubs": [{"connectionString": "`+hubCS+`", "allocationWeight": 3}]}},
		{"type": "Microsoft.Devices/provisioningServices", "apiVersion": "2022-02-05", "name": "skipped", "location": "westeurope", "condition": "[false()]"}`,
		`"scope": {"type": "string", "value": "[reference(variables('name')).idScope]"}, "full": {"type": "object", "value": "[reference(resourceId('Microsoft.Devices/provisioningServices', variables('name')), '2022-02-05', 'Full')]"}`)
	plan, err := build(t, tpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := "dps-" + UniqueString("/subscriptions/sub/resourceGroups/rg")
	if len(plan.Resources) != 2 || plan.Resources[0].Name != name || plan.Resources[1].Name != name+"/ca" {
		t.Fatalf("resources: %+v, want %s then its certificate (the condition-false one left out)", plan.Resources, name)
	}
	r := plan.Resources[0]
	if r.Location != "westeurope" || r.Tags["t"] != "[x]" || r.Instance.AllocationPolicy != "GeoLatency" || len(r.Instance.IotHubs) != 1 ||
		*r.Instance.IotHubs[0].AllocationWeight != 3 || r.Instance.IotHubs[0].HostName != "hub1.localhost:8443" {
		t.Errorf("instance: %+v %+v", r, r.Instance)
	}
	if c := plan.Resources[1]; len(c.DependsOn) != 1 || c.DependsOn[0] != r.ID || !c.Certificate.IsVerified {
		t.Errorf("certificate: %+v", c)
	}
	// The thumbprint is the control API's (pki.SHA1Thumbprint): what-if
	// compares it with the thumbprint the server shows.
	blk, _ := pem.Decode([]byte(certPEM))
	x, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.Resources[1].Certificate.Thumbprint, pki.SHA1Thumbprint(x); got != want {
		t.Errorf("certificate thumbprint %q, want %q", got, want)
	}
	outs, err := plan.Outputs(func(id string, full bool) (any, error) {
		if full {
			return map[string]any{"id": id, "properties": map[string]any{"idScope": "0ne00000042"}}, nil
		}
		return map[string]any{"idScope": "0ne00000042"}, nil
	})
	if err != nil || outs["scope"].Value != "0ne00000042" || outs["full"].Value.(map[string]any)["id"] != r.ID {
		t.Errorf("outputs %+v, %v", outs, err)
	}
}

func TestParametersFileFormats(t *testing.T) {
	tpl := doc(`"n": {"type": "int"}, "s": {"type": "string"}`, "", dps("dps1", ""), "")
	for _, file := range []string{
		`{"$schema": "x", "contentVersion": "1.0.0.0", "parameters": {"n": {"value": 2}, "s": {"value": "a"}}}`,
		`{"parameters": {"n": {"value": 2}, "s": {"value": "a"}}}`,
		`{"n": {"value": 2}, "s": {"value": "a"}}`,
	} {
		parsed, _ := Parse([]byte(tpl))
		var p Params
		if err := p.AddFile("p.json", []byte(file)); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		plan, err := Build(parsed, p, Options{Scope: Scope{Subscription: "s", ResourceGroup: "r"}, Regions: regions.Builtin()})
		if err != nil || len(plan.Parameters) != 2 || plan.Parameters[0].Value != int64(2) || plan.Parameters[1].Value != "a" {
			t.Errorf("%s: %+v %v", file, plan, err)
		}
	}
	var p Params
	err := p.AddFile("kv.json", []byte(`{"n": {"reference": {"keyVault": {}}}}`))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "kv.json: n: Key Vault") {
		t.Errorf("Key Vault reference: %v", err)
	}
}
