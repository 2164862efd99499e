package deployment

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/armtemplate"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// step is one resource of a plan with what exists and what would change.
type step struct {
	res     *armtemplate.Resource
	change  string
	delta   []dpsclient.PropertyChange
	curInst *dpsclient.ProvisioningService
	curCert *dpsclient.Certificate
}

func (s *step) record(outcome string) dpsclient.DeploymentResourceChange {
	return dpsclient.DeploymentResourceChange{ResourceID: s.res.ID, ResourceType: s.res.Type, Name: s.res.Name,
		ChangeType: s.change, Outcome: outcome, Delta: s.delta}
}

// WhatIf reads every resource of plan through c (in the plan's scope) and
// returns what a deployment would change, without changing anything. It
// fails, with the resource's path, on what the deployment would be refused:
// an immutable property that differs, or a new instance's name taken.
func WhatIf(ctx context.Context, c *dpsclient.Control, plan *armtemplate.Plan) ([]dpsclient.DeploymentResourceChange, error) {
	steps, err := preflight(ctx, scoped(c, plan.Scope), plan)
	if err != nil {
		return nil, err
	}
	out := make([]dpsclient.DeploymentResourceChange, len(steps))
	for i, s := range steps {
		out[i] = s.record("")
	}
	return out, nil
}

// scoped returns a copy of c addressing the subscription and resource
// group of scope.
func scoped(c *dpsclient.Control, scope armtemplate.Scope) *dpsclient.Control {
	cc := *c
	cc.Subscription, cc.ResourceGroup = scope.Subscription, scope.ResourceGroup
	return &cc
}

func preflight(ctx context.Context, c *dpsclient.Control, plan *armtemplate.Plan) ([]*step, error) {
	var steps []*step
	var problems armtemplate.Errors
	creating := map[string]bool{} // instances this deployment creates
	for _, r := range plan.Resources {
		s := &step{res: r}
		var err error
		switch r.Type {
		case armtemplate.TypeProvisioningService:
			err = s.planInstance(ctx, c)
			if s.change == ChangeCreate {
				creating[strings.ToLower(r.Name)] = true
			}
		case armtemplate.TypeCertificate:
			err = s.planCertificate(ctx, c, creating[strings.ToLower(r.InstanceName())])
		}
		var es armtemplate.Errors
		switch {
		case errors.As(err, &es):
			problems = append(problems, es...)
		case err != nil:
			return nil, fmt.Errorf("%s (%s): %w", r.Path, r.Name, err)
		}
		steps = append(steps, s)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return steps, nil
}

func notFound(err error) bool {
	var ce *dpsclient.ControlError
	return errors.As(err, &ce) && ce.StatusCode == http.StatusNotFound
}

func (s *step) planInstance(ctx context.Context, c *dpsclient.Control) error {
	r := s.res
	cur, err := c.GetInstance(ctx, r.Name)
	switch {
	case notFound(err):
		a, err := c.CheckNameAvailability(ctx, r.Name)
		if err != nil {
			return err
		}
		if !a.NameAvailable {
			return refused(r.Path+".name", "instance name %q cannot be used: %s", r.Name, a.Message)
		}
		cur = nil
	case err != nil:
		return err
	}
	s.curInst = cur
	if s.delta, err = instanceDelta(r, cur); err != nil {
		return err
	}
	s.change = changeOf(cur != nil, s.delta)
	return nil
}

func (s *step) planCertificate(ctx context.Context, c *dpsclient.Control, parentNew bool) error {
	r := s.res
	var cur *dpsclient.Certificate
	if !parentNew {
		got, err := c.GetCertificate(ctx, r.InstanceName(), r.ChildName())
		switch {
		case notFound(err):
		case err != nil:
			return err
		default:
			cur = got
		}
	}
	s.curCert = cur
	s.delta = certificateDelta(r, cur)
	s.change = changeOf(cur != nil, s.delta)
	return nil
}

func changeOf(exists bool, delta []dpsclient.PropertyChange) string {
	switch {
	case !exists:
		return ChangeCreate
	case len(delta) > 0:
		return ChangeModify
	}
	return ChangeNoChange
}

// apply makes the change of s.
func (s *step) apply(ctx context.Context, c *dpsclient.Control) error {
	r := s.res
	switch {
	case s.change == ChangeNoChange:
		return nil
	case r.Type == armtemplate.TypeProvisioningService:
		_, _, err := c.PutInstance(ctx, r.Name, instanceSpec(r), "")
		return err
	default:
		ifMatch := ""
		if s.curCert != nil {
			ifMatch = s.curCert.Etag
		}
		cert := base64.StdEncoding.EncodeToString(r.Certificate.DER)
		_, err := c.PutCertificate(ctx, r.InstanceName(), r.ChildName(), cert, r.Certificate.IsVerified, ifMatch)
		return err
	}
}

func instanceSpec(r *armtemplate.Resource) dpsclient.InstanceSpec {
	p := r.Instance
	spec := dpsclient.InstanceSpec{Location: r.Location, Tags: r.Tags, AllocationPolicy: p.AllocationPolicy,
		EnableDataResidency: p.EnableDataResidency}
	for _, pol := range p.AuthorizationPolicies {
		spec.AuthorizationPolicies = append(spec.AuthorizationPolicies, dpsclient.AccessPolicy{KeyName: pol.KeyName,
			Rights: pol.Rights, PrimaryKey: pol.PrimaryKey, SecondaryKey: pol.SecondaryKey})
	}
	if p.IotHubs != nil {
		spec.IotHubs = []dpsclient.IotHub{}
		for _, h := range p.IotHubs {
			hub := dpsclient.IotHub{ConnectionString: h.ConnectionString, Location: h.Location, ApplyAllocationPolicy: h.ApplyAllocationPolicy}
			if h.AllocationWeight != nil {
				hub.AllocationWeight = *h.AllocationWeight
			}
			spec.IotHubs = append(spec.IotHubs, hub)
		}
	}
	return spec
}

// Progress receives one line per resource a deployment has dealt with;
// nil discards.
type Progress func(change dpsclient.DeploymentResourceChange)

// Create deploys plan through c as deployment name: a record in state
// Running, the preflight of WhatIf, each resource that is new or differs
// created or updated in order (the others untouched), the outputs, and the
// record in state Succeeded or Failed. The returned record is the stored
// one; err is set when the deployment failed (the record says why). A
// failure in validation or preflight changes no resource.
func Create(ctx context.Context, c *dpsclient.Control, name string, plan *armtemplate.Plan, progress Progress) (*dpsclient.Deployment, error) {
	c = scoped(c, plan.Scope)
	d := &dpsclient.Deployment{Location: plan.Scope.Location, Properties: dpsclient.DeploymentProperties{
		ProvisioningState: dpsclient.DeploymentRunning, Mode: "Incremental", CorrelationID: uuid.NewString(),
		TemplateHash: plan.TemplateHash, Parameters: Parameters(plan)}}
	if _, err := c.PutDeployment(ctx, name, d); err != nil {
		return nil, fmt.Errorf("deployment: record %s: %w", name, err)
	}
	runErr := run(ctx, c, plan, d, progress)
	d.Properties.ProvisioningState = dpsclient.DeploymentSucceeded
	if runErr != nil {
		d.Properties.ProvisioningState = dpsclient.DeploymentFailed
		d.Properties.Error = ErrorDetail(runErr)
	}
	stored, err := c.PutDeployment(context.WithoutCancel(ctx), name, d)
	if err != nil {
		return d, errors.Join(runErr, fmt.Errorf("deployment: record %s: %w", name, err))
	}
	return stored, runErr
}

// RecordFailure stores a deployment that failed before it started (the
// template did not validate): nothing was deployed.
func RecordFailure(ctx context.Context, c *dpsclient.Control, name string, scope armtemplate.Scope, hash string, cause error) (*dpsclient.Deployment, error) {
	d := &dpsclient.Deployment{Location: scope.Location, Properties: dpsclient.DeploymentProperties{
		ProvisioningState: dpsclient.DeploymentFailed, Mode: "Incremental", CorrelationID: uuid.NewString(),
		TemplateHash: hash, Error: ErrorDetail(cause)}}
	return scoped(c, scope).PutDeployment(ctx, name, d)
}

func run(ctx context.Context, c *dpsclient.Control, plan *armtemplate.Plan, d *dpsclient.Deployment, progress Progress) error {
	steps, err := preflight(ctx, c, plan)
	if err != nil {
		return err
	}
	p := &d.Properties
	for i, s := range steps {
		if err := s.apply(ctx, c); err != nil {
			p.ResourceChanges = append(p.ResourceChanges, s.record(OutcomeFailed))
			for _, rest := range steps[i+1:] {
				p.ResourceChanges = append(p.ResourceChanges, rest.record(OutcomeSkipped))
			}
			return &resourceError{res: s.res, err: err}
		}
		ch := s.record(outcomeOf(s.change))
		p.ResourceChanges = append(p.ResourceChanges, ch)
		p.OutputResources = append(p.OutputResources, dpsclient.DeploymentResourceRef{ID: s.res.ID})
		if progress != nil {
			progress(ch)
		}
	}
	outs, err := plan.Outputs(reference(ctx, c, plan))
	if err != nil {
		return err
	}
	p.Outputs = map[string]dpsclient.DeploymentValue{}
	for k, o := range outs {
		v := dpsclient.DeploymentValue{Type: o.Type, Value: o.Value}
		if plan.SecureOutput(k) {
			v.Value = nil
		}
		p.Outputs[k] = v
	}
	return nil
}

func outcomeOf(change string) string {
	switch change {
	case ChangeCreate:
		return OutcomeCreated
	case ChangeModify:
		return OutcomeModified
	}
	return OutcomeUnchanged
}

// reference answers reference() with the resources as the control API
// shows them now.
func reference(ctx context.Context, c *dpsclient.Control, plan *armtemplate.Plan) armtemplate.ReferenceFunc {
	byID := map[string]*armtemplate.Resource{}
	for _, r := range plan.Resources {
		byID[strings.ToLower(r.ID)] = r
	}
	return func(id string, full bool) (any, error) {
		r := byID[strings.ToLower(id)]
		if r == nil {
			return nil, fmt.Errorf("resource %s was not deployed", id)
		}
		var v any
		var err error
		if r.Type == armtemplate.TypeProvisioningService {
			v, err = c.GetInstance(ctx, r.Name)
		} else {
			v, err = c.GetCertificate(ctx, r.InstanceName(), r.ChildName())
		}
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		obj, err := armtemplate.DecodeJSON(b)
		if err != nil {
			return nil, err
		}
		m, _ := obj.(map[string]any)
		if full {
			return m, nil
		}
		return m["properties"], nil
	}
}

// Parameters are the plan's parameters as a record shows them: secure
// ones without their value.
func Parameters(plan *armtemplate.Plan) map[string]dpsclient.DeploymentValue {
	out := map[string]dpsclient.DeploymentValue{}
	for _, p := range plan.Parameters {
		v := dpsclient.DeploymentValue{Type: p.Type, Value: p.Value}
		if p.Secure {
			v.Value = nil
		}
		out[p.Name] = v
	}
	return out
}

// resourceError is a failure of the control API on one resource.
type resourceError struct {
	res *armtemplate.Resource
	err error
}

func (e *resourceError) Error() string {
	return fmt.Sprintf("%s (%s %s): %v", e.res.Path, e.res.Type, e.res.Name, e.err)
}

func (e *resourceError) Unwrap() error { return e.err }

// ErrorDetail renders a deployment error as a record shows it (ARM
// ErrorDetail): InvalidTemplate with one detail per problem and its path,
// InvalidTemplateDeployment for what the control plane refuses, and
// ResourceDeploymentFailure with the resource's path and the server's
// message.
func ErrorDetail(err error) *dpsclient.DeploymentError {
	var es armtemplate.Errors
	var te *armtemplate.Error
	var re *resourceError
	switch {
	case errors.As(err, &es):
		code := "InvalidTemplate"
		out := &dpsclient.DeploymentError{}
		for _, e := range es {
			dc := "InvalidTemplate"
			if errors.Is(e, armtemplate.ErrRefused) {
				dc, code = "InvalidTemplateDeployment", "InvalidTemplateDeployment"
			}
			msg := e.Msg
			if e.Expr != "" {
				msg += " (in " + e.Expr + ")"
			}
			out.Details = append(out.Details, dpsclient.DeploymentError{Code: dc, Message: msg, Target: e.Path})
		}
		out.Code = code
		out.Message = fmt.Sprintf("The template deployment is not valid: %d problem(s), nothing was deployed. First: %s", len(es), es[0].Error())
		return out
	case errors.As(err, &te):
		return &dpsclient.DeploymentError{Code: "InvalidTemplate", Message: te.Msg, Target: te.Path}
	case errors.As(err, &re):
		msg := re.err.Error()
		var ce *dpsclient.ControlError
		if errors.As(re.err, &ce) && ce.Message != "" {
			msg = ce.Message
		}
		return &dpsclient.DeploymentError{Code: "ResourceDeploymentFailure", Target: re.res.Path,
			Message: fmt.Sprintf("%s %s: %s", re.res.Type, re.res.Name, msg)}
	}
	return &dpsclient.DeploymentError{Code: "DeploymentFailed", Message: err.Error()}
}
