// Package deployment runs an ARM template plan (internal/armtemplate)
// against the opendps control API through pkg/dpsclient: what-if (the
// changes a deployment would make, read-only), and create (preflight,
// then each resource created or updated in dependsOn order, only when it
// differs from what exists, then the outputs), keeping a deployment record
// (Microsoft.Resources/deployments) on the server for every operator to
// see. See docs/deployments.md.
//
// Example:
//
//	tpl, _ := armtemplate.Parse(data)
//	plan, err := armtemplate.Build(tpl, params, armtemplate.Options{Scope: scope, Regions: cat})
//	if err != nil { ... } // armtemplate.Errors, each with its JSON path
//	rec, err := deployment.Create(ctx, ctl, "my-deployment", plan, nil)
//	// rec.Properties.ResourceChanges: created / modified / unchanged
//	// rec.Properties.Outputs["idScope"].Value
//
// Functions here are safe for concurrent use on different plans; two
// deployments of the same resources at once race like two ARM PUTs.
package deployment
