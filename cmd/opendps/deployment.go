package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/opendps/opendps/internal/armtemplate"
	"github.com/opendps/opendps/internal/deployment"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(deploymentCmd) }

// deployFlags are the flags of create, validate and what-if.
type deployFlags struct {
	templateFile string
	parameters   []string
	name         string
	location     string
}

func deploymentCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "deployment", Short: "Deploy DPS instances from ARM templates, and see past deployments",
		Long: "Deploy ARM templates of Microsoft.Devices/provisioningServices (and their certificates) through\n" +
			"the control API; see docs/deployments.md for the supported template subset."}
	addARMFlags(cmd)
	var location string
	cmd.PersistentFlags().StringVar(&location, "location", "", "the deployment's region: resourceGroup().location, and whose control API keeps the record (default: the control API's region)")
	cmd.AddCommand(deployCreateCmd(&location), deployValidateCmd(&location), deployWhatIfCmd(&location), deployListCmd(&location), deployShowCmd(&location))
	return cmd
}

func addDeployFlags(cmd *cobra.Command, f *deployFlags) {
	cmd.Flags().StringVarP(&f.templateFile, "template-file", "f", "", "ARM template (JSON) (required)")
	cmd.Flags().StringArrayVarP(&f.parameters, "parameters", "p", nil, "parameters file (FILE or @FILE) or name=value; repeatable, later ones win")
	cmd.Flags().StringVarP(&f.name, "name", "n", "", "deployment name (default: the template file's name without extension)")
	cmd.MarkFlagRequired("template-file")
}

// deployEnv is a control client in the deployment's region and the plan.
type deployEnv struct {
	ctl    *dpsclient.Control
	region string // the deployment's region
	name   string
	scope  armtemplate.Scope
	tpl    *armtemplate.Template
	plan   *armtemplate.Plan
	err    error // validation error (plan is nil)
}

// deploymentControl returns a control client for the region location (the
// default control API when empty), in the ARM scope of the flags, and the
// region it serves.
func deploymentControl(ctx context.Context, location string) (*dpsclient.Control, string, error) {
	env, err := loadClientEnv()
	if err != nil {
		return nil, "", err
	}
	var ctl *dpsclient.Control
	err = regionControl(env, regionIfListed(env, location), func(c *dpsclient.Control) error {
		ctl = c
		return c.Health(ctx)
	})
	if err != nil {
		return nil, "", err
	}
	ctl.Subscription, ctl.ResourceGroup = armScope.subscription, armScope.resourceGroup
	if location == "" {
		if location, err = ctl.NodeRegion(ctx); err != nil {
			return nil, "", err
		}
	}
	return ctl, regions.Normalize(location), nil
}

// regionIfListed returns location when the connection file lists its
// control APIs (a multi-region deployment), else "" (the default one).
func regionIfListed(env *clientEnv, location string) string {
	if location != "" && len(env.Conn.RegionControl(regions.Normalize(location))) > 0 {
		return regions.Normalize(location)
	}
	return ""
}

// prepare reads the template and parameters and builds the plan against
// the server's region catalog. A template that does not validate leaves
// d.err set; other failures are returned.
func prepare(ctx context.Context, f *deployFlags, location string) (*deployEnv, error) {
	data, err := os.ReadFile(f.templateFile)
	if err != nil {
		return nil, err
	}
	var params armtemplate.Params
	for _, p := range f.parameters {
		if err := addParameter(&params, p); err != nil {
			return nil, err
		}
	}
	ctl, region, err := deploymentControl(ctx, location)
	if err != nil {
		return nil, err
	}
	list, err := ctl.Regions(ctx)
	if err != nil {
		return nil, err
	}
	rs := make([]regions.Region, len(list))
	for i, r := range list {
		rs[i] = regions.Region{Name: r.Name, DisplayName: r.DisplayName, PairedRegion: r.PairedRegion,
			AvailabilityZones: r.AvailabilityZones, DataResidencyAllowed: r.DataResidencyAllowed}
	}
	d := &deployEnv{ctl: ctl, region: region, name: f.name,
		scope: armtemplate.Scope{Subscription: ctl.Subscription, ResourceGroup: ctl.ResourceGroup, Location: region}}
	if d.name == "" {
		d.name = strings.TrimSuffix(filepath.Base(f.templateFile), filepath.Ext(f.templateFile))
	}
	if d.tpl, err = armtemplate.Parse(data); err != nil {
		d.err = err
		return d, nil
	}
	d.plan, d.err = armtemplate.Build(d.tpl, params, armtemplate.Options{Scope: d.scope, Regions: armtemplate.CatalogOf(rs)})
	return d, nil
}

// addParameter adds a --parameters value: a file (FILE or @FILE), or
// name=value.
func addParameter(p *armtemplate.Params, arg string) error {
	file := strings.TrimPrefix(arg, "@")
	if st, err := os.Stat(file); err == nil && !st.IsDir() {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		return p.AddFile(file, data)
	} else if strings.HasPrefix(arg, "@") {
		return err
	}
	name, value, ok := strings.Cut(arg, "=")
	if !ok || name == "" {
		return fmt.Errorf("--parameters %q is neither a file nor name=value", arg)
	}
	p.Set(name, value)
	return nil
}

// validationFailed prints every template problem to stderr and returns
// the error the command exits with.
func validationFailed(err error) error {
	var es armtemplate.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			errf("  %s", e.Error())
		}
		return fmt.Errorf("the template is not valid: %d problem(s)", len(es))
	}
	return err
}

// deployVerbCmd is create, validate or what-if: run gets the template and
// parameters of the flags, prepared.
func deployVerbCmd(location *string, verb, short string, run func(cmd *cobra.Command, d *deployEnv) error) *cobra.Command {
	var f deployFlags
	cmd := &cobra.Command{
		Use:   verb + " --template-file FILE [--parameters FILE|name=value ...]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := prepare(cmd.Context(), &f, *location)
			if err != nil {
				return err
			}
			return run(cmd, d)
		},
	}
	addDeployFlags(cmd, &f)
	return cmd
}

func deployCreateCmd(location *string) *cobra.Command {
	return deployVerbCmd(location, "create", "Deploy a template: create or update its resources, idempotently", func(cmd *cobra.Command, d *deployEnv) error {
		ctx := cmd.Context()
		if d.err != nil {
			hash := ""
			if d.tpl != nil {
				hash = d.tpl.Hash
			}
			if _, rerr := deployment.RecordFailure(ctx, d.ctl, d.name, d.scope, hash, d.err); rerr != nil {
				errf("cannot record the failed deployment: %v", rerr)
			}
			return validationFailed(d.err)
		}
		rec, runErr := deployment.Create(ctx, d.ctl, d.name, d.plan, func(ch dpsclient.DeploymentResourceChange) {
			errf("%s %s: %s", ch.ResourceType, ch.Name, ch.Outcome)
		})
		if rec != nil {
			if err := printResult(cmd.OutOrStdout(), rec, func(w io.Writer) { printDeployment(w, rec) }); err != nil {
				return err
			}
		}
		if runErr != nil {
			return validationFailed(runErr)
		}
		return nil
	})
}

// validation is the --json answer of validate.
type validation struct {
	Valid     bool                        `json:"valid"`
	Errors    []dpsclient.DeploymentError `json:"errors,omitempty"`
	Resources []string                    `json:"resources,omitempty"`
}

func deployValidateCmd(location *string) *cobra.Command {
	return deployVerbCmd(location, "validate", "Check a template, its parameters and the control plane's rules, changing nothing", func(cmd *cobra.Command, d *deployEnv) error {
		if d.err == nil {
			_, d.err = deployment.WhatIf(cmd.Context(), d.ctl, d.plan)
		}
		v := validation{Valid: d.err == nil}
		if d.err != nil {
			detail := deployment.ErrorDetail(d.err)
			v.Errors = append([]dpsclient.DeploymentError{}, detail.Details...)
			if len(v.Errors) == 0 {
				v.Errors = []dpsclient.DeploymentError{*detail}
			}
		} else {
			for _, r := range d.plan.Resources {
				v.Resources = append(v.Resources, r.ID)
			}
		}
		if clientFlags.json {
			if err := printResult(cmd.OutOrStdout(), v, nil); err != nil {
				return err
			}
		} else if v.Valid {
			fmt.Fprintf(cmd.OutOrStdout(), "valid: %d resource(s)\n", len(v.Resources))
		}
		if d.err != nil {
			return validationFailed(d.err)
		}
		return nil
	})
}

func deployWhatIfCmd(location *string) *cobra.Command {
	return deployVerbCmd(location, "what-if", "Print the changes a deployment would make, without making them", func(cmd *cobra.Command, d *deployEnv) error {
		if d.err != nil {
			return validationFailed(d.err)
		}
		changes, err := deployment.WhatIf(cmd.Context(), d.ctl, d.plan)
		if err != nil {
			return validationFailed(err)
		}
		return printResult(cmd.OutOrStdout(), map[string]any{"changes": changes}, func(w io.Writer) { printChanges(w, changes) })
	})
}

var changeSymbol = map[string]string{deployment.ChangeCreate: "+", deployment.ChangeModify: "~", deployment.ChangeNoChange: "="}

func printChanges(w io.Writer, changes []dpsclient.DeploymentResourceChange) {
	counts := map[string]int{}
	for _, ch := range changes {
		counts[ch.ChangeType]++
		fmt.Fprintf(w, "%s %-8s %s %s\n", changeSymbol[ch.ChangeType], ch.ChangeType, ch.ResourceType, ch.Name)
		for _, p := range ch.Delta {
			if ch.ChangeType == deployment.ChangeCreate {
				fmt.Fprintf(w, "    %s: %s\n", p.Path, jsonText(p.After))
			} else {
				fmt.Fprintf(w, "    %s: %s => %s\n", p.Path, jsonText(p.Before), jsonText(p.After))
			}
		}
	}
	fmt.Fprintf(w, "\n%d to create, %d to modify, %d unchanged\n", counts[deployment.ChangeCreate], counts[deployment.ChangeModify], counts[deployment.ChangeNoChange])
}

func jsonText(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func printDeployment(w io.Writer, d *dpsclient.Deployment) {
	p := d.Properties
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", d.Name)
	fmt.Fprintf(tw, "state:\t%s\n", p.ProvisioningState)
	fmt.Fprintf(tw, "started:\t%s\n", p.StartTime.Format("2006-01-02T15:04:05Z07:00"))
	fmt.Fprintf(tw, "updated:\t%s\n", p.Timestamp.Format("2006-01-02T15:04:05Z07:00"))
	if p.Duration != "" {
		fmt.Fprintf(tw, "duration:\t%s\n", p.Duration)
	}
	fmt.Fprintf(tw, "location:\t%s\n", orNone(d.Location))
	fmt.Fprintf(tw, "template hash:\t%s\n", p.TemplateHash)
	for _, ch := range p.ResourceChanges {
		fmt.Fprintf(tw, "resource:\t%s %s: %s\n", ch.ResourceType, ch.Name, ch.Outcome)
	}
	for _, k := range sortedOutputKeys(p.Outputs) {
		fmt.Fprintf(tw, "output %s:\t%s\n", k, outputText(p.Outputs[k]))
	}
	if e := p.Error; e != nil {
		fmt.Fprintf(tw, "error:\t%s: %s\n", e.Code, e.Message)
		for _, x := range e.Details {
			fmt.Fprintf(tw, "\t%s: %s\n", x.Target, x.Message)
		}
		if e.Target != "" {
			fmt.Fprintf(tw, "\tat %s\n", e.Target)
		}
	}
	tw.Flush()
}

func outputText(v dpsclient.DeploymentValue) string {
	if s, ok := v.Value.(string); ok {
		return s
	}
	return jsonText(v.Value)
}

func sortedOutputKeys(m map[string]dpsclient.DeploymentValue) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// summary counts the outcomes of a record, e.g. "1 created, 2 unchanged".
func summary(p dpsclient.DeploymentProperties) string {
	counts := map[string]int{}
	for _, ch := range p.ResourceChanges {
		counts[ch.Outcome]++
	}
	var parts []string
	for _, o := range []string{deployment.OutcomeCreated, deployment.OutcomeModified, deployment.OutcomeUnchanged, deployment.OutcomeFailed, deployment.OutcomeSkipped} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func deployListCmd(location *string) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the deployments of the resource group, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctl, _, err := deploymentControl(cmd.Context(), *location)
			if err != nil {
				return err
			}
			list, err := ctl.ListDeployments(cmd.Context())
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), list, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tUPDATED\tDURATION\tRESOURCES\tERROR")
				for _, d := range list {
					p := d.Properties
					e := ""
					if p.Error != nil {
						e = p.Error.Code
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, p.ProvisioningState, p.Timestamp.Format("2006-01-02T15:04:05Z"), orNone(p.Duration), summary(p), e)
				}
				tw.Flush()
			})
		},
	}
}

func deployShowCmd(location *string) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a deployment: state, times, resources, outputs and errors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, _, err := deploymentControl(cmd.Context(), *location)
			if err != nil {
				return err
			}
			d, err := ctl.GetDeployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), d, func(w io.Writer) { printDeployment(w, d) })
		},
	}
}
