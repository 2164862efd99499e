package dpsclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Defaults of Control.
const (
	// DefaultSubscription and DefaultResourceGroup address instances
	// created without an explicit ARM scope.
	DefaultSubscription  = "00000000-0000-0000-0000-000000000000"
	DefaultResourceGroup = "default"
	// ControlAPIVersion is the api-version Control sends (any date works).
	ControlAPIVersion = "2022-02-05"
	// maxAnswer bounds an answer body read into memory.
	maxAnswer = 8 << 20
)

// Control is a client of the opendps control API (ARM-shaped
// Microsoft.Devices/provisioningServices plus opendps routes). Set
// Subscription and ResourceGroup before use to address another scope. A
// Control is safe for concurrent use once configured.
type Control struct {
	Subscription  string
	ResourceGroup string
	APIVersion    string

	base  string
	token string
	hc    *http.Client
}

// NewControl returns a client of the control API at baseURL (e.g.
// "https://localhost:9443"), authenticating with the operator token. A nil
// hc means http.DefaultClient.
func NewControl(baseURL, token string, hc *http.Client) *Control {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Control{Subscription: DefaultSubscription, ResourceGroup: DefaultResourceGroup,
		APIVersion: ControlAPIVersion, base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// ProvisioningService is an instance as the control API shows it.
type ProvisioningService struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Type           string            `json:"type"`
	Location       string            `json:"location"`
	Etag           string            `json:"etag"`
	ResourceGroup  string            `json:"resourcegroup"`
	SubscriptionID string            `json:"subscriptionid"`
	SKU            SKU               `json:"sku"`
	Tags           map[string]string `json:"tags"`
	Properties     ServiceProperties `json:"properties"`
}

// SKU is the pricing tier (always S1).
type SKU struct {
	Name     string `json:"name"`
	Tier     string `json:"tier,omitempty"`
	Capacity int64  `json:"capacity,omitempty"`
}

// ServiceProperties are the properties of a ProvisioningService.
// SecondaryLocation, DisasterRecovery ("enabled"/"disabled") and RegionRole
// are opendps extras.
type ServiceProperties struct {
	State                      string         `json:"state"`
	ProvisioningState          string         `json:"provisioningState"`
	IotHubs                    []IotHub       `json:"iotHubs"`
	AllocationPolicy           string         `json:"allocationPolicy"`
	ServiceOperationsHostName  string         `json:"serviceOperationsHostName"`
	DeviceProvisioningHostName string         `json:"deviceProvisioningHostName"`
	IDScope                    string         `json:"idScope"`
	AuthorizationPolicies      []AccessPolicy `json:"authorizationPolicies"`
	EnableDataResidency        bool           `json:"enableDataResidency"`
	SecondaryLocation          string         `json:"secondaryLocation,omitempty"`
	DisasterRecovery           string         `json:"disasterRecovery"`
	RegionRole                 string         `json:"regionRole,omitempty"`
	// ZoneRedundant: the instance's region spans availability zones
	// (Zones: those of its voting members).
	ZoneRedundant bool     `json:"zoneRedundant"`
	Zones         []string `json:"zones"`
}

// IotHub is a linked hub. In answers the key of ConnectionString is
// masked ("****"). AllocationWeight 0 means the default (1); a nil
// ApplyAllocationPolicy means true; an empty Location means the instance's.
type IotHub struct {
	Name                  string `json:"name,omitempty"`
	ConnectionString      string `json:"connectionString"`
	Location              string `json:"location,omitempty"`
	AllocationWeight      int    `json:"allocationWeight,omitempty"`
	ApplyAllocationPolicy *bool  `json:"applyAllocationPolicy,omitempty"`
}

// AccessPolicy is a shared access policy; keys are empty except from
// ListKeys, GetKeys, SetPolicy and RegenerateKey.
type AccessPolicy struct {
	KeyName      string `json:"keyName"`
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
	Rights       string `json:"rights"`
}

// Certificate is a CA certificate (CertificateResponse). Dates are RFC 1123.
type Certificate struct {
	ID         string                `json:"id"`
	Name       string                `json:"name"`
	Type       string                `json:"type"`
	Etag       string                `json:"etag"`
	Properties CertificateProperties `json:"properties"`
}

// CertificateProperties: VerificationCode is set only by
// GenerateVerificationCode; Certificate is base64 DER.
type CertificateProperties struct {
	VerificationCode string `json:"verificationCode,omitempty"`
	Subject          string `json:"subject"`
	Expiry           string `json:"expiry"`
	Thumbprint       string `json:"thumbprint"`
	IsVerified       bool   `json:"isVerified"`
	Certificate      string `json:"certificate"`
	Created          string `json:"created"`
	Updated          string `json:"updated"`
}

// NameAvailability answers CheckNameAvailability.
type NameAvailability struct {
	NameAvailable bool   `json:"nameAvailable"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message,omitempty"`
}

// InstanceStats counts an instance's records.
type InstanceStats struct {
	Enrollments   int64 `json:"enrollments"`
	Groups        int64 `json:"enrollmentGroups"`
	Registrations int64 `json:"registrations"`
}

// Region is a region catalog entry.
type Region struct {
	Name                 string `json:"name"`
	DisplayName          string `json:"displayName"`
	PairedRegion         string `json:"pairedRegion,omitempty"`
	AvailabilityZones    bool   `json:"availabilityZones"`
	DataResidencyAllowed bool   `json:"dataResidencyAllowed"`
}

// InstanceSpec is the desired state sent by CreateInstance and PutInstance.
// On update, empty fields keep their value; IotHubs nil keeps the hubs and
// non-nil (even empty) replaces them; AuthorizationPolicies empty keeps the
// policies.
type InstanceSpec struct {
	Location              string
	Tags                  map[string]string
	AllocationPolicy      string // Hashed (default), GeoLatency, Static
	EnableDataResidency   *bool
	AuthorizationPolicies []AccessPolicy
	IotHubs               []IotHub
}

func (s *InstanceSpec) body() map[string]any {
	props := map[string]any{}
	if s.AllocationPolicy != "" {
		props["allocationPolicy"] = s.AllocationPolicy
	}
	if s.EnableDataResidency != nil {
		props["enableDataResidency"] = *s.EnableDataResidency
	}
	if len(s.AuthorizationPolicies) > 0 {
		props["authorizationPolicies"] = s.AuthorizationPolicies
	}
	if s.IotHubs != nil {
		props["iotHubs"] = s.IotHubs
	}
	b := map[string]any{"sku": SKU{Name: "S1", Capacity: 1}, "properties": props}
	if s.Location != "" {
		b["location"] = s.Location
	}
	if s.Tags != nil {
		b["tags"] = s.Tags
	}
	return b
}

// ControlError is an error answer of the control API; test it with
// errors.As.
type ControlError struct {
	StatusCode int    // HTTP status
	Code       int    // DPS error code, e.g. 400008
	Message    string // the server's message
	TrackingID string
}

func (e *ControlError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("dpsclient: control API: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("dpsclient: control API: %d: %s", e.StatusCode, e.Message)
}

// call is one request.
type call struct {
	method, path string
	header       http.Header
	body         any
	out          any
}

// do sends k and returns the answer's status (0 when there was none). A
// 2xx answer is decoded into k.out; another is a *ControlError.
func (c *Control) do(ctx context.Context, k call) (int, error) {
	u := c.base + k.path
	if strings.HasPrefix(k.path, "/subscriptions/") {
		u += "?api-version=" + url.QueryEscape(c.APIVersion)
	}
	req, err := newJSONRequest(ctx, k.method, u, k.body, "application/json")
	if err != nil {
		return 0, err
	}
	for key, v := range k.header {
		req.Header[key] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, data, err := readAnswer(c.hc, req, maxAnswer)
	if resp == nil { // not answered
		return 0, fmt.Errorf("dpsclient: control API: %w", err)
	}
	if err != nil { // answer cut short
		return resp.StatusCode, fmt.Errorf("dpsclient: control API: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := parseErrorAnswer(data)
		return resp.StatusCode, &ControlError{StatusCode: resp.StatusCode, Code: e.ErrorCode, Message: e.Message, TrackingID: e.TrackingID}
	}
	if err := decodeAnswer(data, k.out); err != nil {
		return resp.StatusCode, fmt.Errorf("dpsclient: control API: decode answer: %w", err)
	}
	return resp.StatusCode, nil
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			h.Set(kv[i], kv[i+1])
		}
	}
	return h
}

func (c *Control) instancePath(name string, sub ...string) string {
	p := "/subscriptions/" + url.PathEscape(c.Subscription) + "/resourceGroups/" + url.PathEscape(c.ResourceGroup) +
		"/providers/Microsoft.Devices/provisioningServices/" + url.PathEscape(name)
	for _, s := range sub {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// CreateInstance creates instance name; it fails (412) if it exists.
func (c *Control) CreateInstance(ctx context.Context, name string, spec InstanceSpec) (*ProvisioningService, error) {
	var out ProvisioningService
	_, err := c.do(ctx, call{method: http.MethodPut, path: c.instancePath(name), header: header("If-None-Match", "*"), body: spec.body(), out: &out})
	return &out, err
}

// PutInstance creates or updates instance name (ARM PUT); ifMatch, when
// set, must match its etag. created says whether it was created.
func (c *Control) PutInstance(ctx context.Context, name string, spec InstanceSpec, ifMatch string) (*ProvisioningService, bool, error) {
	var out ProvisioningService
	status, err := c.do(ctx, call{method: http.MethodPut, path: c.instancePath(name), header: header("If-Match", ifMatch), body: spec.body(), out: &out})
	return &out, status == http.StatusCreated, err
}

// GetInstance returns instance name (policy keys omitted, hub keys masked).
func (c *Control) GetInstance(ctx context.Context, name string) (*ProvisioningService, error) {
	var out ProvisioningService
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.instancePath(name), out: &out})
	return &out, err
}

// UpdateTags replaces the tags of instance name (ARM PATCH).
func (c *Control) UpdateTags(ctx context.Context, name string, tags map[string]string) (*ProvisioningService, error) {
	var out ProvisioningService
	_, err := c.do(ctx, call{method: http.MethodPatch, path: c.instancePath(name), body: map[string]any{"tags": tags}, out: &out})
	return &out, err
}

// DeleteInstance deletes instance name; ifMatch, when set, must match.
func (c *Control) DeleteInstance(ctx context.Context, name, ifMatch string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: c.instancePath(name), header: header("If-Match", ifMatch)})
	return err
}

// ListInstances lists the instances of the subscription, or of the
// resource group too when inGroup is set.
func (c *Control) ListInstances(ctx context.Context, inGroup bool) ([]ProvisioningService, error) {
	p := "/subscriptions/" + url.PathEscape(c.Subscription) + "/providers/Microsoft.Devices/provisioningServices"
	if inGroup {
		p = "/subscriptions/" + url.PathEscape(c.Subscription) + "/resourceGroups/" + url.PathEscape(c.ResourceGroup) +
			"/providers/Microsoft.Devices/provisioningServices"
	}
	var out struct{ Value []ProvisioningService }
	_, err := c.do(ctx, call{method: http.MethodGet, path: p, out: &out})
	return out.Value, err
}

// CheckNameAvailability asks whether name may be used for a new instance.
func (c *Control) CheckNameAvailability(ctx context.Context, name string) (*NameAvailability, error) {
	var out NameAvailability
	p := "/subscriptions/" + url.PathEscape(c.Subscription) + "/providers/Microsoft.Devices/checkProvisioningServiceNameAvailability"
	_, err := c.do(ctx, call{method: http.MethodPost, path: p, body: map[string]string{"name": name}, out: &out})
	return &out, err
}

// Stats returns the record counts of instance name.
func (c *Control) Stats(ctx context.Context, name string) (*InstanceStats, error) {
	var out InstanceStats
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.instancePath(name, "stats"), out: &out})
	return &out, err
}

// ListKeys returns the policies of instance name with their keys.
func (c *Control) ListKeys(ctx context.Context, name string) ([]AccessPolicy, error) {
	var out struct{ Value []AccessPolicy }
	_, err := c.do(ctx, call{method: http.MethodPost, path: c.instancePath(name, "listkeys"), out: &out})
	return out.Value, err
}

// GetKeys returns one policy with its keys.
func (c *Control) GetKeys(ctx context.Context, name, keyName string) (*AccessPolicy, error) {
	var out AccessPolicy
	_, err := c.do(ctx, call{method: http.MethodPost, path: c.instancePath(name, "keys", keyName, "listkeys"), out: &out})
	return &out, err
}

// SetPolicy adds policy keyName with rights (comma-separated), or changes
// its rights; with createOnly an existing policy fails (412). The answer
// carries the keys.
func (c *Control) SetPolicy(ctx context.Context, name, keyName, rights string, createOnly bool) (*AccessPolicy, error) {
	var out AccessPolicy
	h := http.Header{}
	if createOnly {
		h.Set("If-None-Match", "*")
	}
	_, err := c.do(ctx, call{method: http.MethodPut, path: c.instancePath(name, "policies", keyName), header: h,
		body: map[string]string{"rights": rights}, out: &out})
	return &out, err
}

// RemovePolicy deletes policy keyName (not the last one).
func (c *Control) RemovePolicy(ctx context.Context, name, keyName string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: c.instancePath(name, "policies", keyName)})
	return err
}

// RegenerateKey replaces the "primary" or "secondary" key of policy keyName.
func (c *Control) RegenerateKey(ctx context.Context, name, keyName, which string) (*AccessPolicy, error) {
	var out AccessPolicy
	_, err := c.do(ctx, call{method: http.MethodPost, path: c.instancePath(name, "keys", keyName, "regenerate"),
		body: map[string]string{"key": which}, out: &out})
	return &out, err
}

// ListHubs returns the linked hubs of instance name (keys masked).
func (c *Control) ListHubs(ctx context.Context, name string) ([]IotHub, error) {
	var out struct{ Value []IotHub }
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.instancePath(name, "iotHubs"), out: &out})
	return out.Value, err
}

// LinkHub links hub (or updates the hub of the same host name); the server
// checks that the hub answers and accepts the key.
func (c *Control) LinkHub(ctx context.Context, name string, hub IotHub) (*IotHub, error) {
	host := ConnectionStringHost(hub.ConnectionString)
	if host == "" {
		return nil, errors.New("dpsclient: the hub connection string has no HostName")
	}
	var out IotHub
	_, err := c.do(ctx, call{method: http.MethodPut, path: c.instancePath(name, "iotHubs", host), body: hub, out: &out})
	return &out, err
}

// UnlinkHub unlinks the hub of host name hostName.
func (c *Control) UnlinkHub(ctx context.Context, name, hostName string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: c.instancePath(name, "iotHubs", hostName)})
	return err
}

// ConnectionStringHost returns the HostName of a connection string, "" if none.
func ConnectionStringHost(cs string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "HostName") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ListCertificates returns the CA certificates of instance name.
func (c *Control) ListCertificates(ctx context.Context, name string) ([]Certificate, error) {
	var out struct{ Value []Certificate }
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.instancePath(name, "certificates"), out: &out})
	return out.Value, err
}

// GetCertificate returns CA certificate cert of instance name.
func (c *Control) GetCertificate(ctx context.Context, name, cert string) (*Certificate, error) {
	var out Certificate
	_, err := c.do(ctx, call{method: http.MethodGet, path: c.instancePath(name, "certificates", cert), out: &out})
	return &out, err
}

// PutCertificate uploads CA certificate cert (PEM or base64 DER text);
// verified marks it verified without proof of possession. Replacing an
// existing certificate needs ifMatch (its etag, or "*").
func (c *Control) PutCertificate(ctx context.Context, name, cert, certificate string, verified bool, ifMatch string) (*Certificate, error) {
	var out Certificate
	body := map[string]any{"properties": map[string]any{"certificate": certificate, "isVerified": verified}}
	_, err := c.do(ctx, call{method: http.MethodPut, path: c.instancePath(name, "certificates", cert),
		header: header("If-Match", ifMatch), body: body, out: &out})
	return &out, err
}

// DeleteCertificate deletes CA certificate cert; ifMatch is required.
func (c *Control) DeleteCertificate(ctx context.Context, name, cert, ifMatch string) error {
	_, err := c.do(ctx, call{method: http.MethodDelete, path: c.instancePath(name, "certificates", cert), header: header("If-Match", ifMatch)})
	return err
}

// GenerateVerificationCode gives CA certificate cert a new proof-of-possession
// code (in Properties.VerificationCode); ifMatch is required.
func (c *Control) GenerateVerificationCode(ctx context.Context, name, cert, ifMatch string) (*Certificate, error) {
	var out Certificate
	_, err := c.do(ctx, call{method: http.MethodPost, path: c.instancePath(name, "certificates", cert, "generateVerificationCode"),
		header: header("If-Match", ifMatch), out: &out})
	return &out, err
}

// VerifyCertificate proves possession of the CA key with proof, a
// certificate (PEM or base64 DER) whose CN is the verification code and
// which the CA key signed; ifMatch is required.
func (c *Control) VerifyCertificate(ctx context.Context, name, cert, ifMatch, proof string) (*Certificate, error) {
	var out Certificate
	_, err := c.do(ctx, call{method: http.MethodPost, path: c.instancePath(name, "certificates", cert, "verify"),
		header: header("If-Match", ifMatch), body: map[string]string{"certificate": proof}, out: &out})
	return &out, err
}

// Regions returns the region catalog of the deployment.
func (c *Control) Regions(ctx context.Context) ([]Region, error) {
	var out struct{ Value []Region }
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/opendps/regions", out: &out})
	return out.Value, err
}

// Health returns nil when the control API answers.
func (c *Control) Health(ctx context.Context) error {
	_, err := c.do(ctx, call{method: http.MethodGet, path: "/opendps/health"})
	return err
}
