package armtemplate

import (
	"strings"
)

// Output is an evaluated template output.
type Output struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type outputDef struct {
	name, path, typ string
	value           any
}

func outputDefs(t *Template, c *errs) []outputDef {
	var out []outputDef
	for _, decl := range declarations(t.outputs, "outputs", "an output must be an object with type and value",
		"type %q is not an output type (string, int, bool, object, array)", c) {
		d := outputDef{name: decl.name, path: decl.path, typ: decl.typ}
		if _, loop := lookupFold(decl.m, "copy"); loop {
			c.add(ErrUnsupported, joinPath(d.path, "copy"), "", "output copy loops are not supported")
			continue
		}
		var ok bool
		if d.value, ok = lookupFold(decl.m, "value"); !ok {
			c.add(ErrInvalid, joinPath(d.path, "value"), "", "the output has no value")
			continue
		}
		out = append(out, d)
	}
	return out
}

// ReferenceFunc answers reference(): the properties of the resource of id
// after the deployment or, with full, the whole resource (id, name, type,
// location, sku, tags, properties).
type ReferenceFunc func(id string, full bool) (any, error)

// Outputs evaluates the template's outputs once the resources exist; ref
// answers reference().
func (p *Plan) Outputs(ref ReferenceFunc) (map[string]Output, error) {
	e := *p.env
	e.ref = refFunc(ref)
	c := &errs{}
	out := map[string]Output{}
	for _, d := range p.outputs {
		v := e.evalDeep(joinPath(d.path, "value"), d.value, c)
		if len(c.list) > 0 {
			break
		}
		pd := paramDef{what: "output", typ: d.typ}
		if msg := pd.check(v); msg != "" {
			c.add(ErrInvalid, joinPath(d.path, "value"), exprOf(d.value), "%s", msg)
			break
		}
		out[d.name] = Output{Type: d.typ, Value: v}
	}
	return out, c.err()
}

// SecureOutput reports whether output name is of a secure type.
func (p *Plan) SecureOutput(name string) bool {
	for _, d := range p.outputs {
		if d.name == name {
			return d.typ == TypeSecureString || d.typ == TypeSecureObject
		}
	}
	return false
}

// checkOutputs evaluates the outputs against placeholders of the planned
// resources, so that a bad output fails validation, not the deployment.
func (p *Plan) checkOutputs(c *errs) {
	byID := map[string]*Resource{}
	for _, r := range p.Resources {
		byID[strings.ToLower(r.ID)] = r
	}
	_, err := p.Outputs(func(id string, full bool) (any, error) {
		r := byID[strings.ToLower(id)]
		if r == nil {
			return nil, errorText("resource %s is not deployed (its condition is false)", id)
		}
		return Placeholder(r, full), nil
	})
	if es, ok := err.(Errors); ok {
		c.list = append(c.list, es...)
	}
}

// Placeholder is what reference() returns for r before it exists: its
// properties with every read-only one present (the values are
// placeholders of the right type).
func Placeholder(r *Resource, full bool) map[string]any {
	var props map[string]any
	switch r.Type {
	case TypeProvisioningService:
		props = map[string]any{"state": "Active", "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
			"ipFilterRules": []any{}, "privateEndpointConnections": []any{}, "iotHubs": []any{}, "allocationPolicy": "Hashed",
			"serviceOperationsHostName": "", "deviceProvisioningHostName": "", "idScope": "", "authorizationPolicies": []any{},
			"enableDataResidency": false, "secondaryLocation": "", "disasterRecovery": "", "regionRole": "", "zoneRedundant": false, "zones": []any{}}
	default:
		props = map[string]any{"subject": "", "expiry": "", "thumbprint": "", "isVerified": false, "certificate": "", "created": "", "updated": ""}
	}
	if !full {
		return props
	}
	return map[string]any{"id": r.ID, "name": r.Name, "type": r.Type, "location": r.Location, "etag": "",
		"sku": map[string]any{"name": "S1", "tier": "Standard", "capacity": int64(1)}, "tags": map[string]any{}, "properties": props,
		"resourcegroup": "", "subscriptionid": ""}
}
