package armtemplate

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
)

// Properties of Microsoft.Devices/provisioningServices a template may set,
// and the read-only ones it may not.
var (
	instanceWritable = map[string]bool{"iothubs": true, "allocationpolicy": true, "enabledataresidency": true, "authorizationpolicies": true, "publicnetworkaccess": true, "ipfilterrules": true}
	instanceReadOnly = map[string]bool{"idscope": true, "serviceoperationshostname": true, "deviceprovisioninghostname": true, "state": true, "provisioningstate": true, "secondarylocation": true, "disasterrecovery": true, "regionrole": true, "zoneredundant": true, "zones": true}
	hubKeys          = map[string]bool{"connectionstring": true, "location": true, "allocationweight": true, "applyallocationpolicy": true, "authenticationtype": true}
	policyKeys       = map[string]bool{"keyname": true, "rights": true, "primarykey": true, "secondarykey": true}
)

// instanceResource validates a provisioning service: name, location (a
// catalog region; data residency only where allowed), sku S1, tags and
// properties, with the control plane's rules.
func instanceResource(r *Resource, m map[string]any, e *env, cat Regions, c *errs) {
	if r.Name != "" {
		if err := instance.ValidateName(r.Name); err != nil {
			c.add(ErrInvalid, joinPath(r.Path, "name"), exprOf(lookupKey(m, "name")), "%s", instance.Message(err))
		}
	}
	loc := evalStringKey(r.Path, m, "location", e, c, true)
	if loc != "" {
		if reg, err := cat.Lookup(loc); err != nil {
			c.add(ErrRefused, joinPath(r.Path, "location"), exprOf(lookupKey(m, "location")), "location %q is not a region of this deployment (opendps region list)", loc)
		} else {
			r.Location = reg.Name
		}
	}
	checkSKU(r.Path, m, e, c)
	r.Tags = tags(r.Path, m, e, c)
	props := evalProperties(r.Path, m, e, c)
	if props == nil {
		r.Instance = &InstanceProps{}
		return
	}
	r.Instance = instanceProps(r, props, cat, c)
	if dr := r.Instance.EnableDataResidency; dr != nil && *dr && r.Location != "" {
		if err := cat.CheckDataResidency(r.Location, true); err != nil {
			c.add(ErrRefused, joinPath(r.Path, "properties.enableDataResidency"), "", "%v", err)
		}
	}
}

func checkSKU(path string, m map[string]any, e *env, c *errs) {
	raw, ok := lookupFold(m, "sku")
	if !ok {
		return
	}
	p := joinPath(path, "sku")
	n := len(c.list)
	v, isObj := e.evalDeep(p, raw, c).(map[string]any)
	if len(c.list) > n {
		return
	}
	if !isObj {
		c.add(ErrInvalid, p, "", "sku must be an object such as {\"name\": \"S1\", \"capacity\": 1}")
		return
	}
	if name, _ := lookupKey(v, "name").(string); !strings.EqualFold(name, skuS1) {
		c.add(ErrRefused, joinPath(p, "name"), exprOf(lookupKey(raw.(map[string]any), "name")), "SKU %q is not offered; the only SKU is S1", name)
	}
	if capv, ok := lookupFold(v, "capacity"); ok {
		if n, isInt := capv.(int64); !isInt || n < 1 {
			c.add(ErrInvalid, joinPath(p, "capacity"), "", "capacity must be a positive integer")
		}
	}
}

func tags(path string, m map[string]any, e *env, c *errs) map[string]string {
	raw, ok := lookupFold(m, "tags")
	if !ok {
		return nil
	}
	p := joinPath(path, "tags")
	n := len(c.list)
	v, isObj := e.evalDeep(p, raw, c).(map[string]any)
	if len(c.list) > n {
		return nil
	}
	if !isObj {
		c.add(ErrInvalid, p, exprOf(raw), "tags must be an object of strings")
		return nil
	}
	out := map[string]string{}
	for _, k := range sortedKeys(v) {
		s, isStr := v[k].(string)
		if !isStr {
			c.add(ErrInvalid, joinPath(p, k), "", "a tag value must be a string, not %s", typeName(v[k]))
			continue
		}
		out[k] = s
	}
	return out
}

// evalProperties evaluates the properties object; nil when absent or bad.
func evalProperties(path string, m map[string]any, e *env, c *errs) map[string]any {
	raw, ok := lookupFold(m, "properties")
	if !ok {
		return nil
	}
	p := joinPath(path, "properties")
	n := len(c.list)
	v := e.evalDeep(p, raw, c)
	if len(c.list) > n {
		return nil
	}
	obj, isObj := v.(map[string]any)
	if !isObj {
		c.add(ErrInvalid, p, exprOf(raw), "properties must be an object, not %s", typeName(v))
		return nil
	}
	return obj
}

func instanceProps(r *Resource, props map[string]any, cat Regions, c *errs) *InstanceProps {
	base := joinPath(r.Path, "properties")
	out := &InstanceProps{}
	for _, k := range sortedKeys(props) {
		p, v, lk := joinPath(base, k), props[k], strings.ToLower(k)
		switch {
		case instanceReadOnly[lk]:
			c.add(ErrInvalid, p, "", "%s is read-only: the service sets it (read it with reference() in outputs)", k)
		case !instanceWritable[lk]:
			c.add(ErrUnsupported, p, "", "property %q of %s is not supported", k, TypeProvisioningService)
		case lk == "allocationpolicy":
			out.AllocationPolicy = allocationPolicy(p, v, c)
		case lk == "enabledataresidency":
			b, ok := v.(bool)
			if !ok {
				c.add(ErrInvalid, p, "", "enableDataResidency must be a boolean, not %s", typeName(v))
				continue
			}
			out.EnableDataResidency = &b
		case lk == "publicnetworkaccess":
			if s, _ := v.(string); !strings.EqualFold(s, "Enabled") {
				c.add(ErrUnsupported, p, "", "publicNetworkAccess can only be Enabled")
			}
		case lk == "ipfilterrules":
			if a, _ := v.([]any); len(a) > 0 {
				c.add(ErrUnsupported, p, "", "IP filter rules are not supported")
			}
		case lk == "iothubs":
			out.IotHubs = hubs(p, v, cat, c)
		case lk == "authorizationpolicies":
			out.AuthorizationPolicies = policies(p, v, c)
		}
	}
	return out
}

func allocationPolicy(p string, v any, c *errs) string {
	s, _ := v.(string)
	for _, a := range []string{model.InstanceAllocationHashed, model.InstanceAllocationGeoLatency, model.InstanceAllocationStatic} {
		if strings.EqualFold(a, s) {
			return a
		}
	}
	c.add(ErrInvalid, p, "", "allocationPolicy %s is not one of Hashed, GeoLatency, Static", shortJSON(v))
	return ""
}

func hubs(p string, v any, cat Regions, c *errs) []Hub {
	list, ok := v.([]any)
	if !ok {
		c.add(ErrInvalid, p, "", "iotHubs must be an array, not %s", typeName(v))
		return nil
	}
	out := make([]Hub, 0, len(list))
	seen := map[string]int{}
	for i, item := range list {
		hp := indexPath(p, i)
		h, ok := hub(hp, item, cat, c)
		if !ok {
			continue
		}
		if j, dup := seen[strings.ToLower(h.HostName)]; dup {
			c.add(ErrInvalid, hp, "", "hub %s is already linked by %s", h.HostName, indexPath(p, j))
			continue
		}
		seen[strings.ToLower(h.HostName)] = i
		out = append(out, h)
	}
	if len(list) > instance.MaxHubs {
		c.add(ErrInvalid, p, "", "at most %d hubs can be linked to an instance", instance.MaxHubs)
	}
	return out
}

func hub(hp string, item any, cat Regions, c *errs) (Hub, bool) {
	m, isObj := item.(map[string]any)
	if !isObj {
		c.add(ErrInvalid, hp, "", "a linked hub must be an object with a connectionString")
		return Hub{}, false
	}
	n := len(c.list)
	for _, k := range sortedKeys(m) {
		if !hubKeys[strings.ToLower(k)] && !strings.EqualFold(k, "name") {
			c.add(ErrUnsupported, joinPath(hp, k), "", "property %q of a linked hub is not supported", k)
		}
	}
	var h Hub
	cs, _ := lookupKey(m, "connectionString").(string)
	if parsed, err := sas.ParseConnectionString(cs); err != nil || parsed.HostName == "" || parsed.SharedAccessKeyName == "" || parsed.DeviceID != "" {
		c.add(ErrInvalid, joinPath(hp, "connectionString"), "", "a hub connection string must be HostName=...;SharedAccessKeyName=...;SharedAccessKey=... (a policy of the hub, such as iothubowner)")
	} else {
		h.ConnectionString, h.HostName, h.KeyName = cs, parsed.HostName, parsed.SharedAccessKeyName
	}
	if loc, ok := lookupFold(m, "location"); ok {
		s, _ := loc.(string)
		if r, err := cat.Lookup(s); err != nil {
			c.add(ErrRefused, joinPath(hp, "location"), "", "location %s is not a region of this deployment", shortJSON(loc))
		} else {
			h.Location = r.Name
		}
	}
	if w, ok := lookupFold(m, "allocationWeight"); ok {
		n, isInt := w.(int64)
		if !isInt || n < instance.MinAllocationWeight || n > instance.MaxAllocationWeight {
			c.add(ErrInvalid, joinPath(hp, "allocationWeight"), "", "allocationWeight must be an integer from %d to %d", instance.MinAllocationWeight, instance.MaxAllocationWeight)
		} else {
			wi := int(n)
			h.AllocationWeight = &wi
		}
	}
	if a, ok := lookupFold(m, "applyAllocationPolicy"); ok {
		b, isBool := a.(bool)
		if !isBool {
			c.add(ErrInvalid, joinPath(hp, "applyAllocationPolicy"), "", "applyAllocationPolicy must be a boolean")
		} else {
			h.ApplyAllocationPolicy = &b
		}
	}
	if t, ok := lookupFold(m, "authenticationType"); ok {
		if s, _ := t.(string); !strings.EqualFold(s, "KeyBased") {
			c.add(ErrUnsupported, joinPath(hp, "authenticationType"), "", "only KeyBased hub authentication is supported")
		}
	}
	return h, len(c.list) == n
}

func policies(p string, v any, c *errs) []Policy {
	list, ok := v.([]any)
	if !ok {
		c.add(ErrInvalid, p, "", "authorizationPolicies must be an array, not %s", typeName(v))
		return nil
	}
	out := []Policy{}
	seen := map[string]bool{}
	for i, item := range list {
		pp := indexPath(p, i)
		m, isObj := item.(map[string]any)
		if !isObj {
			c.add(ErrInvalid, pp, "", "a policy must be an object with keyName and rights")
			continue
		}
		for _, k := range sortedKeys(m) {
			if !policyKeys[strings.ToLower(k)] {
				c.add(ErrUnsupported, joinPath(pp, k), "", "property %q of a policy is not supported", k)
			}
		}
		var pol Policy
		pol.KeyName, _ = lookupKey(m, "keyName").(string)
		if pol.KeyName == "" {
			c.add(ErrInvalid, joinPath(pp, "keyName"), "", "keyName is required")
			continue
		}
		if seen[strings.ToLower(pol.KeyName)] {
			c.add(ErrInvalid, joinPath(pp, "keyName"), "", "policy %q is listed twice", pol.KeyName)
		}
		seen[strings.ToLower(pol.KeyName)] = true
		rights, _ := lookupKey(m, "rights").(string)
		canon, err := instance.ParseRights(rights)
		if err != nil || canon == "" {
			c.add(ErrInvalid, joinPath(pp, "rights"), "", "rights: %s", orText(instance.Message(err), "at least one right is required"))
			continue
		}
		pol.Rights = canon
		pol.PrimaryKey, _ = lookupKey(m, "primaryKey").(string)
		pol.SecondaryKey, _ = lookupKey(m, "secondaryKey").(string)
		out = append(out, pol)
	}
	return out
}

func orText(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// certificateResource validates a CA certificate: its name, and the
// certificate (PEM or base64 DER) with isVerified.
func certificateResource(r *Resource, m map[string]any, e *env, c *errs) {
	if r.Name != "" {
		if err := instance.ValidateName(r.InstanceName()); err != nil {
			c.add(ErrInvalid, joinPath(r.Path, "name"), exprOf(lookupKey(m, "name")), "%s", instance.Message(err))
		}
		if err := instance.ValidateCertificateName(r.ChildName()); err != nil {
			c.add(ErrInvalid, joinPath(r.Path, "name"), exprOf(lookupKey(m, "name")), "%s", instance.Message(err))
		}
	}
	if _, ok := lookupFold(m, "location"); ok {
		c.add(ErrInvalid, joinPath(r.Path, "location"), "", "a certificate has no location (it lives in its instance's)")
	}
	props := evalProperties(r.Path, m, e, c)
	base := joinPath(r.Path, "properties")
	if props == nil {
		c.add(ErrInvalid, base, "", "a certificate needs properties.certificate")
		return
	}
	cp := &CertificateProps{}
	for _, k := range sortedKeys(props) {
		switch p := joinPath(base, k); strings.ToLower(k) {
		case "certificate":
			s, _ := props[k].(string)
			x, err := parseCertificate(s)
			if err != nil {
				c.add(ErrInvalid, p, "", "%v", err)
				continue
			}
			cp.Certificate, cp.DER, cp.Thumbprint = s, x.Raw, pki.SHA1Thumbprint(x)
		case "isverified":
			b, ok := props[k].(bool)
			if !ok {
				c.add(ErrInvalid, p, "", "isVerified must be a boolean")
			}
			cp.IsVerified = b
		default:
			c.add(ErrUnsupported, p, "", "property %q of a certificate is not supported (certificate, isVerified)", k)
		}
	}
	if cp.DER == nil {
		if _, given := lookupFold(props, "certificate"); !given {
			c.add(ErrInvalid, joinPath(base, "certificate"), "", "certificate is required (PEM or base64 DER)")
		}
	}
	r.Certificate = cp
}

// parseCertificate decodes a PEM or base64 DER X.509 certificate.
func parseCertificate(s string) (*x509.Certificate, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if b, _ := pem.Decode([]byte(s)); b != nil {
		der = b.Bytes
	} else {
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, errorText("certificate must be PEM or base64 DER")
		}
		der = d
	}
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errorText("certificate is not an X.509 certificate: %v", err)
	}
	return x, nil
}
