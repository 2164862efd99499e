package dpsclient

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Deployment is a deployment record (Microsoft.Resources/deployments) as
// the control API keeps it: what `opendps deployment create` did, for
// every operator of the region to see. The server sets ID, Name, Type and
// the times.
type Deployment struct {
	ID         string               `json:"id,omitempty"`
	Name       string               `json:"name,omitempty"`
	Type       string               `json:"type,omitempty"`
	Location   string               `json:"location,omitempty"`
	Properties DeploymentProperties `json:"properties"`
}

// Provisioning states of a Deployment.
const (
	DeploymentRunning   = "Running"
	DeploymentSucceeded = "Succeeded"
	DeploymentFailed    = "Failed"
)

// DeploymentProperties are the properties of a Deployment.
// ResourceChanges is an opendps extra: what happened to each resource.
type DeploymentProperties struct {
	ProvisioningState string                     `json:"provisioningState"`
	Mode              string                     `json:"mode,omitempty"`
	Timestamp         time.Time                  `json:"timestamp,omitzero"`
	StartTime         time.Time                  `json:"startTime,omitzero"`
	Duration          string                     `json:"duration,omitempty"`
	CorrelationID     string                     `json:"correlationId,omitempty"`
	TemplateHash      string                     `json:"templateHash,omitempty"`
	Parameters        map[string]DeploymentValue `json:"parameters,omitempty"`
	Outputs           map[string]DeploymentValue `json:"outputs,omitempty"`
	OutputResources   []DeploymentResourceRef    `json:"outputResources,omitempty"`
	ResourceChanges   []DeploymentResourceChange `json:"resourceChanges,omitempty"`
	Error             *DeploymentError           `json:"error,omitempty"`
}

// DeploymentValue is a parameter or output: its type and value. Secure
// parameters are recorded without their value.
type DeploymentValue struct {
	Type  string `json:"type"`
	Value any    `json:"value,omitempty"`
}

// DeploymentResourceRef names a resource the deployment made or kept.
type DeploymentResourceRef struct {
	ID string `json:"id"`
}

// DeploymentResourceChange is what a deployment did (or, in a what-if,
// would do) to one resource. ChangeType is Create, Modify, NoChange or,
// for a failed deployment, the change that was attempted; Outcome is
// created, modified, unchanged, failed or skipped (not reached).
type DeploymentResourceChange struct {
	ResourceID   string           `json:"resourceId"`
	ResourceType string           `json:"resourceType"`
	Name         string           `json:"name"`
	ChangeType   string           `json:"changeType"`
	Outcome      string           `json:"outcome,omitempty"`
	Delta        []PropertyChange `json:"delta,omitempty"`
}

// PropertyChange is one changed property of a Modify: its path in the
// resource, and the values before and after (secrets masked).
type PropertyChange struct {
	Path   string `json:"path"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
}

// DeploymentError is the error of a failed deployment (ARM ErrorDetail):
// Target is the JSON path in the template, when known.
type DeploymentError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Target  string            `json:"target,omitempty"`
	Details []DeploymentError `json:"details,omitempty"`
}

func (c *Control) deploymentPath(name string) string {
	p := "/subscriptions/" + url.PathEscape(c.Subscription) + "/resourceGroups/" + url.PathEscape(c.ResourceGroup) +
		"/providers/Microsoft.Resources/deployments"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// PutDeployment creates or replaces the record of deployment name in the
// client's resource group and returns it as stored.
func (c *Control) PutDeployment(ctx context.Context, name string, d *Deployment) (*Deployment, error) {
	var out Deployment
	_, err := c.do(ctx, call{method: http.MethodPut, path: c.deploymentPath(name), body: d, out: &out})
	return &out, err
}

// GetDeployment returns the record of deployment name.
func (c *Control) GetDeployment(ctx context.Context, name string) (*Deployment, error) {
	var out Deployment
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.deploymentPath(name), out: &out})
	return &out, err
}

// ListDeployments returns the deployment records of the resource group,
// newest first.
func (c *Control) ListDeployments(ctx context.Context) ([]Deployment, error) {
	var out struct{ Value []Deployment }
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.deploymentPath(""), out: &out})
	return out.Value, err
}

// DeleteDeployment deletes the record of deployment name (not what it
// deployed).
func (c *Control) DeleteDeployment(ctx context.Context, name string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: c.deploymentPath(name)})
	return err
}

// NodeRegion returns the region of the node that answers (the region
// field of GET /opendps/regions).
func (c *Control) NodeRegion(ctx context.Context) (string, error) {
	var out struct {
		Region string `json:"region"`
	}
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/opendps/regions", out: &out})
	return out.Region, err
}
