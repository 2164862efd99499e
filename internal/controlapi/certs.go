package controlapi

import (
	"net/http"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
)

// certificateType is the ARM type of a CA certificate (spec §8.4).
const certificateType = "Microsoft.Devices/ProvisioningServices/Certificates"

// certificateJSON is CertificateResponse, and VerificationCodeResponse
// when VerificationCode is set.
type certificateJSON struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Etag       string          `json:"etag"`
	Properties certificateProp `json:"properties"`
}

// certificateProp: dates in RFC 1123 ("Thu, 12 Oct 2017 19:23:50 GMT"),
// certificate as base64 DER.
type certificateProp struct {
	VerificationCode string `json:"verificationCode,omitempty"`
	Subject          string `json:"subject"`
	Expiry           string `json:"expiry"`
	Thumbprint       string `json:"thumbprint"`
	IsVerified       bool   `json:"isVerified"`
	Certificate      string `json:"certificate"`
	Created          string `json:"created"`
	Updated          string `json:"updated"`
}

// certificateBody is the body of PUT .../certificates/{name}:
// {"properties":{"certificate":"...","isVerified":bool}}; the top-level
// {"certificate":"..."} of older API versions is accepted too.
type certificateBody struct {
	Certificate string `json:"certificate"`
	IsVerified  *bool  `json:"isVerified"`
	Properties  *struct {
		Certificate string `json:"certificate"`
		IsVerified  *bool  `json:"isVerified"`
	} `json:"properties"`
}

func (b *certificateBody) spec(ifMatch string) instance.CertSpec {
	s := instance.CertSpec{Certificate: b.Certificate, IsVerified: b.IsVerified, IfMatch: ifMatch}
	if p := b.Properties; p != nil {
		if p.Certificate != "" {
			s.Certificate = p.Certificate
		}
		if p.IsVerified != nil {
			s.IsVerified = p.IsVerified
		}
	}
	return s
}

func renderCert(in *model.Instance, c model.Certificate, withCode bool) certificateJSON {
	j := certificateJSON{ID: instanceID(orDefault(in.SubscriptionID, instance.DefaultSubscription),
		orDefault(in.ResourceGroup, instance.DefaultResourceGroup), in.Name) + "/certificates/" + c.Name,
		Name: c.Name, Type: certificateType, Etag: c.Etag,
		Properties: certificateProp{Subject: c.Subject, Expiry: c.Expiry.UTC().Format(http.TimeFormat),
			Thumbprint: c.Thumbprint, IsVerified: c.IsVerified, Certificate: c.Certificate,
			Created: c.Created.UTC().Format(http.TimeFormat), Updated: c.Updated.UTC().Format(http.TimeFormat)}}
	if withCode {
		j.Properties.VerificationCode = c.VerificationCode
	}
	return j
}

func writeCert(w http.ResponseWriter, in *model.Instance, c model.Certificate, withCode bool) error {
	w.Header().Set("ETag", `"`+c.Etag+`"`)
	return apierr.JSON(w, http.StatusOK, renderCert(in, c, withCode))
}

func (h *Handler) listCertificates(w http.ResponseWriter, r *http.Request, p params) error {
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	cs, err := h.m.Certificates(r.Context(), in.Name)
	if err != nil {
		return err
	}
	out := listBody[certificateJSON]{Value: make([]certificateJSON, 0, len(cs))}
	for _, c := range cs {
		out.Value = append(out.Value, renderCert(in, c, false))
	}
	return apierr.JSON(w, http.StatusOK, out)
}

func (h *Handler) getCertificate(w http.ResponseWriter, r *http.Request, p params) error {
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	c, err := h.m.Certificate(r.Context(), in.Name, p["cert"], r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	return writeCert(w, in, c, false)
}

// putCertificate answers 200 on create and on update: the ARM SDK accepts
// only 200 here.
func (h *Handler) putCertificate(w http.ResponseWriter, r *http.Request, p params) error {
	var b certificateBody
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	c, _, err := h.m.PutCertificate(r.Context(), in.Name, p["cert"], b.spec(r.Header.Get("If-Match")))
	if err != nil {
		return err
	}
	return writeCert(w, in, c, false)
}

func (h *Handler) deleteCertificate(w http.ResponseWriter, r *http.Request, p params) error {
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	if err := h.m.DeleteCertificate(r.Context(), in.Name, p["cert"], r.Header.Get("If-Match")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) generateVerificationCode(w http.ResponseWriter, r *http.Request, p params) error {
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	c, err := h.m.GenerateVerificationCode(r.Context(), in.Name, p["cert"], r.Header.Get("If-Match"))
	if err != nil {
		return err
	}
	return writeCert(w, in, c, true)
}

// verifyBody is VerificationCodeRequest: {"certificate":"<PEM or base64 DER>"}.
type verifyBody struct {
	Certificate string `json:"certificate"`
}

func (h *Handler) verifyCertificate(w http.ResponseWriter, r *http.Request, p params) error {
	var b verifyBody
	if err := h.decode(r, &b, true); err != nil {
		return err
	}
	in, err := h.lookup(r.Context(), p)
	if err != nil {
		return err
	}
	c, err := h.m.VerifyCertificate(r.Context(), in.Name, p["cert"], r.Header.Get("If-Match"), b.Certificate)
	if err != nil {
		return err
	}
	return writeCert(w, in, c, false)
}
