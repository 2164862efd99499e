package console

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
)

// Linked hubs and CA certificates of an instance: its configuration,
// which needs the ServiceConfig right.

type hubData struct {
	Hubs []model.LinkedHub // connection strings masked
}

func (c *Console) hubList(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := c.cfg.Instances.Get(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	hubs := make([]model.LinkedHub, len(v.Hubs))
	for i, h := range v.Hubs {
		h.ConnectionString = instance.MaskConnectionString(h.ConnectionString)
		hubs[i] = h
	}
	c.renderInst(w, r, http.StatusOK, "hubs", p, "Linked IoT hubs", v.Instance.Name, hubData{Hubs: hubs})
	return nil
}

func (c *Console) addHub(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst := r.PathValue("name")
	spec := instance.HubSpec{ConnectionString: strings.TrimSpace(r.PostFormValue("connectionString"))}
	if s := strings.TrimSpace(r.PostFormValue("weight")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return badRequest("The allocation weight must be a whole number (1 to 1000).")
		}
		spec.AllocationWeight = &n
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	h, _, err := c.cfg.Instances.AddHub(ctx, inst, spec)
	if err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "hubs"), "Hub "+h.Name+" linked.")
}

func (c *Console) removeHub(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, hub := r.PathValue("name"), r.PostFormValue("hub")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := c.cfg.Instances.RemoveHub(ctx, inst, hub); err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "hubs"), "Hub "+hub+" removed.")
}

type certData struct {
	Certs []model.Certificate
}

func (c *Console) certList(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	certs, err := c.cfg.Instances.Certificates(ctx, inst)
	if err != nil {
		return err
	}
	c.renderInst(w, r, http.StatusOK, "certificates", p, "CA certificates", inst, certData{Certs: certs})
	return nil
}

// pemField is a PEM from the form: the uploaded file if any, else the
// text area.
func pemField(r *http.Request, field string) string {
	if f, _, err := r.FormFile(field + "File"); err == nil {
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 64<<10))
		if err == nil && len(b) > 0 {
			return string(b)
		}
	}
	return strings.TrimSpace(r.PostFormValue(field))
}

func (c *Console) uploadCert(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, name := r.PathValue("name"), strings.TrimSpace(r.PostFormValue("certName"))
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	cert, _, err := c.cfg.Instances.PutCertificate(ctx, inst, name, instance.CertSpec{Certificate: pemField(r, "pem")})
	if err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "certificates"), "Certificate "+cert.Name+" uploaded: generate a verification code to prove possession.")
}

func (c *Console) certCode(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, name := r.PathValue("name"), r.PostFormValue("certName")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	cert, err := c.cfg.Instances.GenerateVerificationCode(ctx, inst, name, r.PostFormValue("etag"))
	if err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "certificates"), "Verification code of "+cert.Name+": "+cert.VerificationCode+
		". Sign a certificate with CN="+cert.VerificationCode+" with this CA's key and verify with it.")
}

func (c *Console) verifyCert(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, name := r.PathValue("name"), r.PostFormValue("certName")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	cert, err := c.cfg.Instances.VerifyCertificate(ctx, inst, name, r.PostFormValue("etag"), pemField(r, "proof"))
	if err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "certificates"), "Certificate "+cert.Name+" verified.")
}

func (c *Console) deleteCert(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, name := r.PathValue("name"), r.PostFormValue("certName")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := c.cfg.Instances.DeleteCertificate(ctx, inst, name, r.PostFormValue("etag")); err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, "certificates"), "Certificate "+name+" deleted.")
}
