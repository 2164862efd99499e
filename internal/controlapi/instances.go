package controlapi

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
)

// Wire values of the ARM resource (spec §8.3).
const (
	resourceType         = "Microsoft.Devices/provisioningServices"
	skuS1                = "S1"
	tierStandard         = "Standard"
	provisioningDone     = "Succeeded"
	publicNetworkEnabled = "Enabled"
	authKeyBased         = "KeyBased"
	drEnabled            = "enabled"
	drDisabled           = "disabled"
)

// resource is ProvisioningServiceDescription.
type resource struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	Location       string            `json:"location"`
	Etag           string            `json:"etag"`
	ResourceGroup  string            `json:"resourcegroup"`
	SubscriptionID string            `json:"subscriptionid"`
	SKU            sku               `json:"sku"`
	Tags           map[string]string `json:"tags"`
	Properties     properties        `json:"properties"`
}

type sku struct {
	Name     string `json:"name"`
	Tier     string `json:"tier,omitempty"`
	Capacity int64  `json:"capacity,omitempty"`
}

// properties is IotDpsPropertiesDescription plus opendps extras
// (secondaryLocation, disasterRecovery, regionRole, zoneRedundant, zones).
type properties struct {
	State                      string      `json:"state"`
	ProvisioningState          string      `json:"provisioningState"`
	PublicNetworkAccess        string      `json:"publicNetworkAccess"`
	IPFilterRules              []any       `json:"ipFilterRules"`
	PrivateEndpointConnections []any       `json:"privateEndpointConnections"`
	IotHubs                    []hubJSON   `json:"iotHubs"`
	AllocationPolicy           string      `json:"allocationPolicy"`
	ServiceOperationsHostName  string      `json:"serviceOperationsHostName"`
	DeviceProvisioningHostName string      `json:"deviceProvisioningHostName"`
	IDScope                    string      `json:"idScope"`
	AuthorizationPolicies      []policyOut `json:"authorizationPolicies"`
	EnableDataResidency        bool        `json:"enableDataResidency"`
	SecondaryLocation          string      `json:"secondaryLocation,omitempty"`
	DisasterRecovery           string      `json:"disasterRecovery"`
	RegionRole                 string      `json:"regionRole,omitempty"` // primary|secondary in the answering region
	// ZoneRedundant and Zones (opendps extras): the region's nodes span
	// availability zones (docs/zones.md); no tenant setting controls it.
	ZoneRedundant bool     `json:"zoneRedundant"`
	Zones         []string `json:"zones"`
}

// hubJSON is IotHubDefinitionDescription, in requests and answers.
type hubJSON struct {
	Name                  string `json:"name,omitempty"`     // read-only: the host name
	HostName              string `json:"hostName,omitempty"` // read-only (newer API versions)
	ConnectionString      string `json:"connectionString"`
	Location              string `json:"location"`
	AllocationWeight      *int   `json:"allocationWeight,omitempty"`
	ApplyAllocationPolicy *bool  `json:"applyAllocationPolicy,omitempty"`
	AuthenticationType    string `json:"authenticationType,omitempty"`
}

// policyOut is SharedAccessSignatureAuthorizationRule; keys are omitted on
// GET and given by listkeys.
type policyOut struct {
	KeyName      string `json:"keyName"`
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
	Rights       string `json:"rights"`
}

// resourceBody is the body of PUT (and PATCH) on an instance.
type resourceBody struct {
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	SKU        *sku              `json:"sku"`
	Properties *propertiesBody   `json:"properties"`
}

type propertiesBody struct {
	IotHubs               []hubJSON   `json:"iotHubs"` // null/absent keeps, [] removes all
	AllocationPolicy      string      `json:"allocationPolicy"`
	AuthorizationPolicies []policyOut `json:"authorizationPolicies"` // null/absent/[] keeps
	EnableDataResidency   *bool       `json:"enableDataResidency"`
}

// instanceID is the ARM id of an instance.
func instanceID(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/" + resourceType + "/" + name
}

func render(v *instance.View) resource {
	in := &v.Instance
	res := resource{ID: instanceID(v.Subscription(), v.ResourceGroup(), in.Name), Name: in.Name, Type: resourceType,
		Location: in.Location, Etag: in.Etag, ResourceGroup: v.ResourceGroup(), SubscriptionID: v.Subscription(),
		SKU: sku{Name: skuS1, Tier: tierStandard, Capacity: 1}, Tags: in.Tags}
	if res.Tags == nil {
		res.Tags = map[string]string{}
	}
	p := properties{State: orDefault(in.State, instance.StateActive), ProvisioningState: provisioningDone,
		PublicNetworkAccess: publicNetworkEnabled, IPFilterRules: []any{}, PrivateEndpointConnections: []any{},
		IotHubs: renderHubs(v.Hubs), AllocationPolicy: in.AllocationPolicy, ServiceOperationsHostName: v.ServiceHostName,
		DeviceProvisioningHostName: v.DeviceHostName, IDScope: in.IDScope, AuthorizationPolicies: renderPolicies(in.AuthorizationPolicies, false),
		EnableDataResidency: in.EnableDataResidency, SecondaryLocation: in.SecondaryLocation,
		DisasterRecovery: drDisabled, RegionRole: v.Dir.Role, ZoneRedundant: v.ZoneRedundant, Zones: v.Zones}
	if p.Zones == nil {
		p.Zones = []string{}
	}
	if v.Dir.DREnabled {
		p.DisasterRecovery = drEnabled
	}
	res.Properties = p
	return res
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func renderHubs(hs []model.LinkedHub) []hubJSON {
	out := make([]hubJSON, 0, len(hs))
	for _, h := range hs {
		out = append(out, renderHub(h))
	}
	return out
}

// renderHub shows a linked hub with its key masked.
func renderHub(h model.LinkedHub) hubJSON {
	w, apply := h.AllocationWeight, h.ApplyAllocationPolicy
	return hubJSON{Name: h.Name, HostName: h.Name, ConnectionString: instance.MaskConnectionString(h.ConnectionString),
		Location: h.Location, AllocationWeight: &w, ApplyAllocationPolicy: &apply, AuthenticationType: authKeyBased}
}

func renderPolicies(ps []model.AccessPolicy, keys bool) []policyOut {
	out := make([]policyOut, 0, len(ps))
	for _, p := range ps {
		out = append(out, renderPolicy(p, keys))
	}
	return out
}

// renderPolicy renders p, with its keys when keys is set.
func renderPolicy(p model.AccessPolicy, keys bool) policyOut {
	o := policyOut{KeyName: p.KeyName, Rights: p.Rights}
	if keys {
		o.PrimaryKey, o.SecondaryKey = p.PrimaryKey, p.SecondaryKey
	}
	return o
}

// specFromBody turns a PUT body into a Spec.
func specFromBody(sub, rg, name string, b *resourceBody) (instance.Spec, error) {
	s := instance.Spec{Name: name, Location: b.Location, SubscriptionID: sub, ResourceGroup: rg, Tags: b.Tags}
	if b.SKU != nil && b.SKU.Name != "" && !strings.EqualFold(b.SKU.Name, skuS1) {
		return s, badRequest("SKU %q is not offered; the only SKU is S1.", clip(b.SKU.Name))
	}
	p := b.Properties
	if p == nil {
		return s, nil
	}
	s.AllocationPolicy, s.EnableDataResidency = p.AllocationPolicy, p.EnableDataResidency
	for _, x := range p.AuthorizationPolicies {
		s.Policies = append(s.Policies, instance.PolicySpec{KeyName: x.KeyName, PrimaryKey: x.PrimaryKey, SecondaryKey: x.SecondaryKey, Rights: x.Rights})
	}
	if p.IotHubs != nil {
		s.Hubs = make([]instance.HubSpec, 0, len(p.IotHubs))
		for _, x := range p.IotHubs {
			s.Hubs = append(s.Hubs, hubSpec(x))
		}
	}
	return s, nil
}

func hubSpec(x hubJSON) instance.HubSpec {
	return instance.HubSpec{ConnectionString: x.ConnectionString, Location: x.Location,
		AllocationWeight: x.AllocationWeight, ApplyAllocationPolicy: x.ApplyAllocationPolicy}
}

// decodeInstanceBody decodes and converts a PUT body (also the fuzz target).
func decodeInstanceBody(sub, rg, name string, body []byte) (instance.Spec, error) {
	var b resourceBody
	if err := apierr.DecodeBytes(body, &b); err != nil {
		return instance.Spec{}, err
	}
	return specFromBody(sub, rg, name, &b)
}

func (h *Handler) putInstance(w http.ResponseWriter, r *http.Request, p params) error {
	var b resourceBody
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	spec, err := specFromBody(p["sub"], p["rg"], p["name"], &b)
	if err != nil {
		return err
	}
	spec.IfMatch = r.Header.Get("If-Match")
	spec.CreateOnly = strings.TrimSpace(r.Header.Get("If-None-Match")) == "*"
	v, created, err := h.m.Put(r.Context(), spec)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		setOperationHeaders(w, r, p, false)
	}
	return writeResource(w, status, v)
}

// setOperationHeaders advertises the long-running operation of a create or
// delete the ARM way: Azure-AsyncOperation (and, for a delete, Location)
// name .../operationresults/{id}?api-version=...&asyncinfo=true, which
// answers {"status":"Succeeded"}. Operations here finish before the
// answer, so the ARM clients' pollers (core-lro, azure-core, autorest)
// finish on their first poll; Retry-After: 0 tells them not to wait.
func setOperationHeaders(w http.ResponseWriter, r *http.Request, p params, location bool) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := url.Values{"api-version": {r.URL.Query().Get("api-version")}, "asyncinfo": {"true"}}
	u := scheme + "://" + r.Host + instanceID(url.PathEscape(p["sub"]), url.PathEscape(p["rg"]), url.PathEscape(p["name"])) +
		"/operationresults/" + uuid.NewString() + "?" + q.Encode()
	h := w.Header()
	h.Set("Azure-AsyncOperation", u)
	if location {
		h.Set("Location", u)
	}
	h.Set("Retry-After", "0")
}

func writeResource(w http.ResponseWriter, status int, v *instance.View) error {
	w.Header().Set("ETag", `"`+v.Instance.Etag+`"`)
	return apierr.JSON(w, status, render(v))
}

// lookup returns the instance of the request path, or 404 when it does not
// exist in the path's subscription and resource group.
func (h *Handler) lookup(ctx context.Context, p params) (*model.Instance, error) {
	in, err := h.m.Lookup(ctx, p["name"])
	if err != nil {
		return nil, err
	}
	if !instance.InScope(in, p["sub"], p["rg"]) {
		return nil, notFound("Instance %q not found in resource group %s of subscription %s.", p["name"], p["rg"], p["sub"])
	}
	return in, nil
}

func (h *Handler) getInstance(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	v, err := h.m.Get(r.Context(), p["name"])
	if err != nil {
		return err
	}
	return writeResource(w, http.StatusOK, v)
}

func (h *Handler) patchInstance(w http.ResponseWriter, r *http.Request, p params) error {
	var b struct {
		Tags map[string]string `json:"tags"`
	}
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	v, err := h.m.UpdateTags(r.Context(), p["name"], b.Tags)
	if err != nil {
		return err
	}
	return writeResource(w, http.StatusOK, v)
}

func (h *Handler) deleteInstance(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	if err := h.m.Delete(r.Context(), p["name"], r.Header.Get("If-Match")); err != nil {
		return err
	}
	// 202 with the operation headers, as ARM resource providers answer a
	// delete (spec §8.2: 200/202/204/404 are all valid).
	setOperationHeaders(w, r, p, true)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// listBody is an ARM list page (no nextLink: one page holds everything).
type listBody[T any] struct {
	Value []T `json:"value"`
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, sub, rg string) error {
	vs, err := h.m.List(r.Context(), sub, rg)
	if err != nil {
		return err
	}
	out := listBody[resource]{Value: make([]resource, 0, len(vs))}
	for _, v := range vs {
		out.Value = append(out.Value, render(v))
	}
	return apierr.JSON(w, http.StatusOK, out)
}

func (h *Handler) listBySubscription(w http.ResponseWriter, r *http.Request, p params) error {
	return h.list(w, r, p["sub"], "")
}

func (h *Handler) listByResourceGroup(w http.ResponseWriter, r *http.Request, p params) error {
	return h.list(w, r, p["sub"], p["rg"])
}

func (h *Handler) checkName(w http.ResponseWriter, r *http.Request, _ params) error {
	var b struct {
		Name string `json:"name"`
	}
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	if b.Name == "" {
		return badRequest("The body must name the instance: {\"name\": \"...\"}.")
	}
	a, err := h.m.CheckName(r.Context(), b.Name)
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, a)
}

func (h *Handler) listSKUs(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, listBody[sku]{Value: []sku{{Name: skuS1}}})
}

// operationResult is AsyncOperationResult. Every operation finishes before
// its answer (setOperationHeaders), so any operation id has succeeded.
func (h *Handler) operationResult(w http.ResponseWriter, r *http.Request, p params) error {
	return apierr.JSON(w, http.StatusOK, map[string]string{"status": provisioningDone})
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request, p params) error {
	if _, err := h.lookup(r.Context(), p); err != nil {
		return err
	}
	s, err := h.m.Stats(r.Context(), p["name"])
	if err != nil {
		return err
	}
	return apierr.JSON(w, http.StatusOK, s)
}
