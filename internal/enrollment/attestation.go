package enrollment

import (
	"encoding/base64"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
)

// maxCANameLen bounds a CA reference.
const maxCANameLen = 256

// attestCtx is what attestation validation needs beyond the request.
type attestCtx struct {
	tx       *store.Tx
	instance string
	group    bool                        // validating an enrollment group
	old      *model.AttestationMechanism // the stored attestation on update, else nil
}

// prepareAttestation validates a, fills what the service owns (generated
// keys, certificate info) and keeps secrets the client omitted on update
// (a GET/modify/PUT round trip must not rotate keys). Mechanisms that do
// not match a.Type are dropped.
func (c attestCtx) prepareAttestation(a *model.AttestationMechanism) error {
	if a == nil {
		return invalid("attestation is required.")
	}
	allowed := []string{model.AttestationSymmetricKey, model.AttestationX509, model.AttestationTPM}
	if c.group {
		allowed = allowed[:2]
	}
	typ := canonical(a.Type, allowed...)
	if typ == "" {
		return invalid("attestation.type %q is not supported here; use %s.", a.Type, strings.Join(allowed, ", "))
	}
	a.Type = typ
	if c.old != nil && c.old.Type != typ {
		c.old = nil
	}
	switch typ {
	case model.AttestationSymmetricKey:
		a.TPM, a.X509 = nil, nil
		return c.prepareSymmetricKey(a)
	case model.AttestationTPM:
		a.SymmetricKey, a.X509 = nil, nil
		return c.prepareTPM(a)
	default:
		a.SymmetricKey, a.TPM = nil, nil
		return c.prepareX509(a)
	}
}

func (c attestCtx) prepareSymmetricKey(a *model.AttestationMechanism) error {
	if a.SymmetricKey == nil {
		a.SymmetricKey = &model.SymmetricKeyAttestation{}
	}
	var old model.SymmetricKeyAttestation
	if c.old != nil && c.old.SymmetricKey != nil {
		old = *c.old.SymmetricKey
	}
	k := a.SymmetricKey
	for _, f := range []struct {
		name     string
		key, old *string
	}{
		{"attestation.symmetricKey.primaryKey", &k.PrimaryKey, &old.PrimaryKey},
		{"attestation.symmetricKey.secondaryKey", &k.SecondaryKey, &old.SecondaryKey},
	} {
		switch {
		case *f.key != "":
			if err := ValidateKey(f.name, *f.key); err != nil {
				return err
			}
		case *f.old != "":
			*f.key = *f.old
		default:
			*f.key = GenerateKey()
		}
	}
	return nil
}

func (c attestCtx) prepareTPM(a *model.AttestationMechanism) error {
	if (a.TPM == nil || a.TPM.EndorsementKey == "") && c.old != nil && c.old.TPM != nil {
		t := *c.old.TPM
		a.TPM = &t
	}
	if a.TPM == nil || a.TPM.EndorsementKey == "" {
		return invalid("attestation.tpm.endorsementKey is required.")
	}
	if b, err := base64.StdEncoding.DecodeString(a.TPM.EndorsementKey); err != nil || len(b) == 0 {
		return invalid("attestation.tpm.endorsementKey is not valid base64.")
	}
	if a.TPM.StorageRootKey != "" {
		if _, err := base64.StdEncoding.DecodeString(a.TPM.StorageRootKey); err != nil {
			return invalid("attestation.tpm.storageRootKey is not valid base64.")
		}
	}
	return nil
}

func (c attestCtx) prepareX509(a *model.AttestationMechanism) error {
	x := a.X509
	if x == nil {
		return invalid("attestation.x509 is required for type x509.")
	}
	var old model.X509Attestation
	if c.old != nil && c.old.X509 != nil {
		old = *c.old.X509
	}
	if !c.group {
		if x.SigningCertificates != nil || x.CAReferences != nil {
			return invalid("attestation.x509 of an individual enrollment takes clientCertificates only.")
		}
		return prepareCertPair("attestation.x509.clientCertificates", x.ClientCertificates, old.ClientCertificates)
	}
	if x.ClientCertificates != nil {
		return invalid("attestation.x509 of an enrollment group takes signingCertificates or caReferences, not clientCertificates.")
	}
	switch {
	case x.SigningCertificates != nil && x.CAReferences != nil:
		return invalid("attestation.x509 takes signingCertificates or caReferences, not both.")
	case x.CAReferences != nil:
		return c.checkCARefs(x.CAReferences)
	default:
		return prepareCertPair("attestation.x509.signingCertificates", x.SigningCertificates, old.SigningCertificates)
	}
}

// prepareCertPair parses a primary (required) and secondary certificate.
func prepareCertPair(field string, p, old *model.X509Certificates) error {
	if p == nil || p.Primary == nil {
		return invalid("%s.primary is required.", field)
	}
	if old == nil {
		old = &model.X509Certificates{}
	}
	var err error
	if p.Primary, err = prepareCert(field+".primary", p.Primary, old.Primary); err != nil {
		return err
	}
	p.Secondary, err = prepareCert(field+".secondary", p.Secondary, old.Secondary)
	return err
}

// prepareCert parses one certificate (PEM or base64 DER), stores it as PEM
// and fills its info. A certificate sent back with its info only (as GET
// returns it) keeps the stored one of the same slot.
func prepareCert(field string, c, old *model.X509CertificateWithInfo) (*model.X509CertificateWithInfo, error) {
	if c == nil {
		return nil, nil
	}
	if c.Certificate == "" {
		if old != nil && old.Certificate != "" {
			kept := *old
			return &kept, nil
		}
		return nil, invalid("%s.certificate is required.", field)
	}
	cert, err := pki.ParseCertificate([]byte(c.Certificate))
	if err != nil {
		return nil, invalid("%s.certificate is not a valid X.509 certificate (PEM or base64 DER): %v", field, strings.TrimPrefix(err.Error(), "pki: "))
	}
	info := model.X509CertificateInfo(pki.InfoOf(cert))
	return &model.X509CertificateWithInfo{Certificate: string(pki.EncodePEM("CERTIFICATE", cert.Raw)), Info: &info}, nil
}

// checkCARefs requires each reference to name a verified CA certificate of
// the instance.
func (c attestCtx) checkCARefs(r *model.X509CAReferences) error {
	if r.Primary == "" {
		return invalid("attestation.x509.caReferences.primary is required.")
	}
	for _, ref := range []struct{ field, name string }{
		{"primary", r.Primary}, {"secondary", r.Secondary},
	} {
		if ref.name == "" {
			continue
		}
		if len(ref.name) > maxCANameLen || strings.Contains(ref.name, "/") {
			return invalid("attestation.x509.caReferences.%s is not a certificate name.", ref.field)
		}
		var cert model.Certificate
		ok, err := c.tx.Get(store.Key(c.instance, store.KindCertificate, ref.name), &cert)
		if err != nil {
			return err
		}
		if !ok {
			return invalid("attestation.x509.caReferences.%s names CA certificate %q, which does not exist.", ref.field, ref.name)
		}
		if !cert.IsVerified {
			return invalid("attestation.x509.caReferences.%s names CA certificate %q, which is not verified.", ref.field, ref.name)
		}
	}
	return nil
}
