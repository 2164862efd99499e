package allocate

import (
	"context"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// custom asks the enrollment's webhook (§7.4).
func (a *Allocator) custom(ctx context.Context, req *Request) (Result, error) {
	ec := req.enrollment()
	def := ec.CustomAllocationDefinition
	switch {
	case a.Webhook == nil:
		return Result{}, fail(CodeCustomAllocationFailed, ErrPolicy, "custom allocation is not enabled on this server")
	case def == nil || def.WebhookURL == "":
		return Result{}, fail(CodeCustomAllocationFailed, ErrPolicy, "the enrollment uses custom allocation but has no customAllocationDefinition.webhookUrl")
	}
	hubs, err := a.customHubs(req, ec)
	if err != nil {
		return Result{}, err
	}
	resp, err := a.Webhook.Call(ctx, def, buildRequest(req, hubs))
	if err != nil {
		return Result{}, err
	}
	return Result{Hub: resp.IoTHubHostName, Policy: model.AllocationCustom, InitialTwin: resp.InitialTwin, Payload: resp.Payload}, nil
}

// customHubs returns the hubs offered to the webhook. A registered device
// whose enrollment never reprovisions is offered its current hub only, as
// DPS does.
func (a *Allocator) customHubs(req *Request, ec *model.EnrollmentCommon) ([]model.LinkedHub, error) {
	if cur := req.Current; cur != nil && cur.Hub != "" && !effectivePolicy(ec.ReprovisionPolicy).UpdateHubAssignment {
		h, ok := findHub(req.LinkedHubs, cur.Hub)
		if !ok {
			h = model.LinkedHub{Name: cur.Hub}
		}
		return []model.LinkedHub{h}, nil
	}
	return a.live(offered(candidatesOf(ec, req.LinkedHubs)))
}

// buildRequest assembles the AllocationRequest.
func buildRequest(req *Request, hubs []model.LinkedHub) *AllocationRequest {
	r := &AllocationRequest{DeviceRuntimeContext: runtimeContext(req), LinkedHubs: make([]string, len(hubs))}
	for i, h := range hubs {
		r.LinkedHubs[i] = h.Name
	}
	if req.Individual != nil {
		e := *req.Individual
		redact(&e.EnrollmentCommon)
		r.IndividualEnrollment = &e
	} else if req.Group != nil {
		g := *req.Group
		redact(&g.EnrollmentCommon)
		r.EnrollmentGroup = &g
	}
	return r
}

// redact keeps only the attestation type and hides the webhook key, in a
// shallow copy.
func redact(c *model.EnrollmentCommon) {
	if c.Attestation != nil {
		c.Attestation = &model.AttestationMechanism{Type: c.Attestation.Type}
	}
	if d := c.CustomAllocationDefinition; d != nil {
		c.CustomAllocationDefinition = &model.CustomAllocationDefinition{WebhookURL: redactURL(d.WebhookURL), APIVersion: d.APIVersion}
	}
}

func runtimeContext(req *Request) DeviceRuntimeContext {
	rc := DeviceRuntimeContext{RegistrationID: req.RegistrationID, Payload: normPayload(req.Payload)}
	if cur := req.Current; cur != nil && cur.Hub != "" {
		rc.CurrentIotHubHostName, rc.CurrentIoTHubHostName, rc.CurrentDeviceID = cur.Hub, cur.Hub, cur.DeviceID
	}
	typ := req.Device.AttestationType
	if typ == "" && req.enrollment().Attestation != nil {
		typ = req.enrollment().Attestation.Type
	}
	switch typ {
	case model.AttestationX509:
		rc.X509 = &X509RuntimeContext{}
		if c := req.Device.Certificate; c != nil {
			info := model.X509CertificateInfo(pki.InfoOf(c))
			rc.X509.CertificateInfo = &info
		}
		if c := req.Device.SigningCertificate; c != nil {
			info := model.X509CertificateInfo(pki.InfoOf(c))
			rc.X509.SigningCertificateInfo = &info
		}
	case model.AttestationTPM:
		rc.TPM = req.Device.TPM
		if rc.TPM == nil {
			rc.TPM = &model.TPMAttestation{}
		}
	default:
		rc.SymmetricKey = &struct{}{}
	}
	return rc
}
