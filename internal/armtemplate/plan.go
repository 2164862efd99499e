package armtemplate

import (
	"strings"

	"github.com/opendps/opendps/internal/regions"
)

// Scope is where a deployment runs.
type Scope struct {
	Subscription  string
	ResourceGroup string
	// Location is resourceGroup().location: the deployment's region
	// (opendps resource groups have no stored location; the CLI takes
	// --location, else the region of the control API it talks to).
	Location string
}

// Regions is what validation needs of the region catalog;
// *regions.Catalog implements it, and CatalogOf makes one from a list.
type Regions interface {
	Lookup(name string) (regions.Region, error)
	CheckDataResidency(region string, want bool) error
}

var _ Regions = (*regions.Catalog)(nil)

// Options configure Build.
type Options struct {
	Scope Scope
	// Regions is the deployment's region catalog (the server's: GET
	// /opendps/regions). Required.
	Regions Regions
}

// Plan is a validated template with its parameter values: the resources
// to deploy, in an order that respects dependsOn, and the outputs to
// evaluate after the deployment. It is read-only once built.
type Plan struct {
	Scope        Scope
	TemplateHash string
	// Resources in deployment order (dependencies first); resources whose
	// condition is false are left out.
	Resources []*Resource
	// Parameters are the values used, in name order.
	Parameters []Parameter
	outputs    []outputDef
	env        *env
}

// Parameter is a parameter value of a plan. Secure parameters
// (securestring, secureObject) must not be shown or stored.
type Parameter struct {
	Name   string
	Type   string
	Value  any
	Secure bool
}

// Build validates the template with params and returns the plan, or
// Errors listing every problem found with its JSON path.
func Build(t *Template, params Params, opts Options) (*Plan, error) {
	if opts.Regions == nil {
		return nil, &Error{Kind: ErrInvalid, Msg: "armtemplate: Options.Regions is required"}
	}
	c := &errs{list: append(Errors(nil), t.problems.list...)}
	e := &env{scope: opts.Scope, paramsAllowed: true, done: map[string]any{}, active: map[string]bool{},
		names: map[string]string{}, vars: map[string]any{}, resources: map[string]string{}}
	plan := &Plan{Scope: opts.Scope, TemplateHash: t.Hash, env: e}
	plan.Parameters, e.params = resolveParams(t, params, opts.Scope, c)
	for _, name := range sortedKeys(t.variables) {
		if strings.HasPrefix(name, "$") { // $fxv#0 and the like: compiler metadata
			continue
		}
		e.vars[strings.ToLower(name)] = t.variables[name]
		e.names[strings.ToLower(name)] = name
	}
	for _, name := range sortedKeys(e.names) { // every variable is evaluated, used or not
		if _, err := e.variable(&callNode{name: "variables"}, e.names[name]); err != nil {
			c.addErr(joinPath("variables", e.names[name]), err)
		}
	}
	all := buildResources(t, e, opts.Regions, c)
	plan.Resources = order(all, c)
	plan.outputs = outputDefs(t, c)
	if len(c.list) == 0 {
		plan.checkOutputs(c)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return plan, nil
}

// resolveParams gives every declared parameter its value: given, or its
// default (which may use parameters() of other parameters).
func resolveParams(t *Template, given Params, scope Scope, c *errs) ([]Parameter, map[string]any) {
	defs := t.paramDefs(c)
	declared := map[string]*paramDef{}
	for i := range defs {
		declared[strings.ToLower(defs[i].name)] = &defs[i]
	}
	for _, k := range given.order {
		if declared[k] == nil {
			v := given.vals[k]
			c.add(ErrInvalid, joinPath("parameters", v.name), "", "%s gives parameter %q, which the template does not declare (declared: %s)",
				v.source, v.name, strings.Join(defNames(defs), ", "))
		}
	}
	values := map[string]any{}
	pe := &env{scope: scope, params: values, paramsAllowed: true}
	var out []Parameter
	for i := range defs {
		d := &defs[i]
		v, ok := paramValueOf(d, given, pe, c)
		if !ok {
			continue
		}
		if msg := d.check(v); msg != "" {
			c.add(ErrInvalid, d.path, "", "%s", msg)
			continue
		}
		values[strings.ToLower(d.name)] = v
		out = append(out, Parameter{Name: d.name, Type: d.typ, Value: v, Secure: d.secure()})
	}
	return out, values
}

// paramValueOf returns the given value of d, or its default evaluated.
// Defaults are evaluated in name order; a default that uses a parameter
// declared later (by name) sees it only if that one was given.
func paramValueOf(d *paramDef, given Params, pe *env, c *errs) (any, bool) {
	if gv, ok := given.vals[strings.ToLower(d.name)]; ok {
		if !gv.text {
			return gv.value, true
		}
		v, err := d.convertText(gv.value.(string))
		if err != nil {
			c.add(ErrInvalid, d.path, "", "%s value: %v", gv.source, err)
			return nil, false
		}
		return v, true
	}
	if !d.hasDef {
		c.add(ErrInvalid, d.path, "", "parameter %q has no value and no defaultValue", d.name)
		return nil, false
	}
	ce := &errs{}
	v := pe.evalDeep(joinPath(d.path, "defaultValue"), d.def, ce)
	if len(ce.list) > 0 {
		c.list = append(c.list, ce.list...)
		return nil, false
	}
	return v, true
}

func defNames(defs []paramDef) []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.name
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// CatalogOf returns a Regions over a list of regions (as GET
// /opendps/regions gives them), with the same rules as *regions.Catalog.
func CatalogOf(list []regions.Region) Regions {
	c := catalogList{byName: map[string]regions.Region{}}
	for _, r := range list {
		r.Name = regions.Normalize(r.Name)
		c.byName[r.Name] = r
		c.byName[regions.Normalize(r.DisplayName)] = r
		c.order = append(c.order, r)
	}
	return c
}

type catalogList struct {
	byName map[string]regions.Region
	order  []regions.Region
}

func (c catalogList) Lookup(name string) (regions.Region, error) {
	r, ok := c.byName[regions.Normalize(name)]
	if !ok {
		return r, errorText("%v %q", regions.ErrUnknownRegion, name)
	}
	return r, nil
}

func (c catalogList) CheckDataResidency(region string, want bool) error {
	r, err := c.Lookup(region)
	if err != nil || !want || r.DataResidencyAllowed {
		return err
	}
	var allowed []string
	for _, x := range c.order {
		if x.DataResidencyAllowed {
			allowed = append(allowed, x.DisplayName)
		}
	}
	return errorText("enableDataResidency is only allowed in regions that permit opting out of disaster recovery (%s); %s (%s) replicates to its paired region",
		strings.Join(allowed, ", "), r.DisplayName, r.Name)
}
