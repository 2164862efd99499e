package allocate

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Health says whether a linked hub should receive devices. Implementations
// must be safe for concurrent use and answer from memory (it is called for
// every candidate of every registration).
type Health interface {
	// Healthy reports whether the hub with this host name is usable.
	Healthy(hostName string) bool
}

// HealthFunc adapts a function to Health.
type HealthFunc func(hostName string) bool

// Healthy calls f.
func (f HealthFunc) Healthy(hostName string) bool { return f(hostName) }

// Assignment is where a registered device currently is (from its
// registration record).
type Assignment struct {
	// Hub is the host name of the hub holding the device identity; empty
	// means the device is not assigned (treated as a first registration).
	Hub string
	// DeviceID is the device's identity in Hub.
	DeviceID string
	// Substatus is the registration's current substatus.
	Substatus string
	// InitialHub is the hub of the device's first assignment, when the
	// registration record keeps it ("" if unknown); Decide uses it for
	// substatus reprovisionedToInitialAssignment.
	InitialHub string
}

// Device is what the custom allocation webhook is told about the device's
// attestation (deviceRuntimeContext, §7.4).
type Device struct {
	// AttestationType is model.AttestationSymmetricKey, X509 or TPM.
	AttestationType string
	// Certificate and SigningCertificate are the leaf and the group anchor
	// of an X.509 device (either may be nil).
	Certificate, SigningCertificate *x509.Certificate
	// TPM holds the keys of a TPM device.
	TPM *model.TPMAttestation
}

// Request is one allocation. Exactly one of Individual and Group should be
// set; when both are, the individual enrollment's settings apply (as in
// attest.Match.Enrollment).
type Request struct {
	RegistrationID string
	Individual     *model.IndividualEnrollment
	Group          *model.EnrollmentGroup
	// LinkedHubs are the instance's linked hubs.
	LinkedHubs []model.LinkedHub
	// DefaultPolicy is the instance's allocation policy, in ARM ("Hashed")
	// or service API ("hashed") spelling; empty means hashed.
	DefaultPolicy string
	// ServingRegion is the region of the node serving the request
	// (geoLatency).
	ServingRegion string
	// Current is the device's current assignment, nil on first
	// registration.
	Current *Assignment
	// Payload is the device's registration payload (custom allocation);
	// nil or JSON null means none.
	Payload json.RawMessage
	// Device describes the attestation (custom allocation).
	Device Device
}

func (r *Request) enrollment() *model.EnrollmentCommon {
	if r.Individual != nil {
		return &r.Individual.EnrollmentCommon
	}
	if r.Group != nil {
		return &r.Group.EnrollmentCommon
	}
	return &model.EnrollmentCommon{}
}

// Result is the chosen hub.
type Result struct {
	// Hub is the host name, spelled as in the linked hub.
	Hub string
	// Policy is the policy applied (service API spelling: "hashed", ...).
	Policy string
	// InitialTwin is the webhook's initial twin (custom only); nil means
	// the enrollment's applies. See Decision.ApplyInitialTwin for when.
	InitialTwin *model.InitialTwin
	// Payload is the webhook's payload for the device (custom only).
	Payload json.RawMessage
}

// Allocator chooses the hub of a registering device. The zero value
// allocates with every hub considered healthy and refuses custom
// allocation (no webhook client). An Allocator is safe for concurrent use;
// do not change its fields while it is in use.
type Allocator struct {
	// Health, when set, removes unhealthy hubs from the candidates (DPS
	// keeps assigning to a dead hub; opendps does not).
	Health Health
	// Webhook calls custom allocation webhooks; nil refuses custom.
	Webhook *Webhook
}

// Allocate applies the enrollment's allocation policy, or the instance
// default, to the candidate hubs (see the package documentation for the
// candidate rules). Failures are *Error; a canceled ctx is returned as is.
func (a *Allocator) Allocate(ctx context.Context, req Request) (Result, error) {
	ec := req.enrollment()
	policy, err := resolvePolicy(ec.AllocationPolicy, req.DefaultPolicy)
	if err != nil {
		return Result{}, err
	}
	switch policy {
	case model.AllocationStatic:
		return a.static(ec, req.LinkedHubs)
	case model.AllocationCustom:
		return a.custom(ctx, &req)
	}
	hubs, err := a.live(participating(candidatesOf(ec, req.LinkedHubs)))
	if err != nil {
		return Result{}, err
	}
	var h model.LinkedHub
	if policy == model.AllocationGeoLatency {
		h, _ = GeoLatency(req.RegistrationID, req.ServingRegion, hubs)
	} else {
		h, _ = Hashed(req.RegistrationID, hubs)
	}
	return Result{Hub: h.Name, Policy: policy}, nil
}

// resolvePolicy returns the service API spelling of the policy in force.
func resolvePolicy(enrollment, instance string) (string, error) {
	p, from := enrollment, "enrollment"
	if p == "" {
		p, from = instance, "instance"
	}
	for _, known := range []string{model.AllocationHashed, model.AllocationGeoLatency, model.AllocationStatic, model.AllocationCustom} {
		if strings.EqualFold(p, known) {
			if known == model.AllocationCustom && from == "instance" {
				break // DPS: custom cannot be the instance default
			}
			return known, nil
		}
	}
	switch {
	case p == "":
		return model.AllocationHashed, nil
	case strings.EqualFold(p, model.AllocationCustom):
		return "", fail(CodeNoHub, ErrPolicy, "custom allocation cannot be the instance's default policy; set it on the enrollment")
	}
	return "", fail(CodeNoHub, ErrPolicy, "allocation policy %q of the %s is not supported", p, from)
}

// static assigns the one hub the enrollment names (§7.1). The hub's
// applyAllocationPolicy does not matter: naming it is an explicit choice.
func (a *Allocator) static(ec *model.EnrollmentCommon, linked []model.LinkedHub) (Result, error) {
	names := ec.IoTHubs
	if len(names) == 0 && ec.IoTHubHostName != "" {
		names = []string{ec.IoTHubHostName}
	}
	if len(names) != 1 {
		return Result{}, noHub("static allocation needs exactly one IoT hub on the enrollment (iotHubs or iotHubHostName); it names %d", len(names))
	}
	h, ok := findHub(linked, names[0])
	if !ok {
		return Result{}, noHub("IoT hub %q named by the enrollment is not linked to this instance", names[0])
	}
	if a.Health != nil && !a.Health.Healthy(h.Name) {
		return Result{}, fail(CodeNoHealthyHub, ErrNoHealthyHub, "IoT hub %q of the static allocation is unavailable", h.Name)
	}
	return Result{Hub: h.Name, Policy: model.AllocationStatic}, nil
}
