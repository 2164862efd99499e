package armtemplate

import (
	"strconv"
	"strings"
)

// Parameter types (case-insensitive in templates).
const (
	TypeString       = "string"
	TypeSecureString = "securestring"
	TypeInt          = "int"
	TypeBool         = "bool"
	TypeObject       = "object"
	TypeSecureObject = "secureobject"
	TypeArray        = "array"
)

// Params are parameter values given to a deployment: parameters files and
// name=value pairs, later ones winning. The zero value is empty and ready.
type Params struct {
	vals  map[string]paramValue // lower-case name
	order []string
}

type paramValue struct {
	name   string
	value  any
	text   bool   // from name=value: converted to the declared type
	source string // where it came from, for messages
}

func (p *Params) set(name string, v paramValue) {
	if p.vals == nil {
		p.vals = map[string]paramValue{}
	}
	k := strings.ToLower(name)
	if _, ok := p.vals[k]; !ok {
		p.order = append(p.order, k)
	}
	p.vals[k] = v
}

// Set gives parameter name the value text, converted to the parameter's
// declared type (int, bool; object and array as JSON) by Build.
func (p *Params) Set(name, text string) {
	p.set(name, paramValue{name: name, value: text, text: true, source: "name=value"})
}

// AddFile adds the values of a parameters file: either the deployment
// parameters format ({"$schema": ..., "parameters": {"x": {"value": ...}}})
// or its "parameters" object alone. source names the file in errors.
func (p *Params) AddFile(source string, data []byte) error {
	v, err := decodeJSON(data)
	if err != nil {
		return &Error{Kind: ErrInvalid, Msg: source + " is not valid JSON: " + err.Error()}
	}
	top, ok := v.(map[string]any)
	if !ok {
		return &Error{Kind: ErrInvalid, Msg: source + " must be a JSON object"}
	}
	body, base := top, ""
	if inner, ok := lookupKey(top, "parameters").(map[string]any); ok && onlyEnvelope(top) {
		body, base = inner, "parameters"
	}
	var c errs
	for _, name := range sortedKeys(body) {
		if strings.HasPrefix(name, "$") || (base == "" && strings.EqualFold(name, "contentVersion")) {
			continue
		}
		path := source + ": " + joinPath(base, name)
		entry, ok := body[name].(map[string]any)
		if !ok {
			c.add(ErrInvalid, path, "", "a parameter value must be an object {\"value\": ...}")
			continue
		}
		if lookupKey(entry, "reference") != nil {
			c.add(ErrUnsupported, path, "", "Key Vault references are not supported; pass the value")
			continue
		}
		val, ok := lookupFold(entry, "value")
		if !ok {
			c.add(ErrInvalid, path, "", "the parameter has no \"value\"")
			continue
		}
		p.set(name, paramValue{name: name, value: val, source: source})
	}
	return c.err()
}

// onlyEnvelope reports whether top has no keys but those of the
// deployment parameters format ($schema, contentVersion, parameters).
func onlyEnvelope(top map[string]any) bool {
	for k := range top {
		switch strings.ToLower(k) {
		case "$schema", "contentversion", "parameters":
		default:
			return false
		}
	}
	return true
}

// paramDef is a declared parameter (or, for check, an output).
type paramDef struct {
	name                           string
	path                           string
	what                           string // "parameter" or "output", in messages
	typ                            string // lower case
	def                            any
	hasDef                         bool
	allowed                        []any
	minLen, maxLen, minVal, maxVal *int64
}

// declaration is an entry of the parameters or outputs section that is an
// object with a valid type.
type declaration struct {
	name, path, typ string // typ lower case
	m               map[string]any
}

// declarations returns the entries of section (the template's key) in name
// order that are objects of a valid type, adding notObject or badType
// (with the type given) for each other entry.
func declarations(section map[string]any, key, notObject, badType string, c *errs) []declaration {
	var out []declaration
	for _, name := range sortedKeys(section) {
		path := joinPath(key, name)
		m, ok := section[name].(map[string]any)
		if !ok {
			c.add(ErrInvalid, path, "", "%s", notObject)
			continue
		}
		typ, _ := lookupKey(m, "type").(string)
		switch lt := strings.ToLower(typ); lt {
		case TypeString, TypeSecureString, TypeInt, TypeBool, TypeObject, TypeSecureObject, TypeArray:
			out = append(out, declaration{name: name, path: path, typ: lt, m: m})
		default:
			c.add(ErrInvalid, joinPath(path, "type"), "", badType, typ)
		}
	}
	return out
}

func (t *Template) paramDefs(c *errs) []paramDef {
	var out []paramDef
	for _, decl := range declarations(t.parameters, "parameters", "a parameter declaration must be an object with a type",
		"type %q is not a parameter type (string, securestring, int, bool, object, secureObject, array)", c) {
		m, path := decl.m, decl.path
		d := paramDef{name: decl.name, path: path, what: "parameter", typ: decl.typ}
		d.def, d.hasDef = lookupFold(m, "defaultValue")
		if a, ok := lookupFold(m, "allowedValues"); ok {
			if d.allowed, ok = a.([]any); !ok {
				c.add(ErrInvalid, joinPath(path, "allowedValues"), "", "allowedValues must be an array")
			}
		}
		for key, dst := range map[string]**int64{"minLength": &d.minLen, "maxLength": &d.maxLen, "minValue": &d.minVal, "maxValue": &d.maxVal} {
			if v, ok := lookupFold(m, key); ok {
				n, isInt := v.(int64)
				if !isInt {
					c.add(ErrInvalid, joinPath(path, key), "", "%s must be an integer", key)
					continue
				}
				*dst = &n
			}
		}
		out = append(out, d)
	}
	return out
}

// secure reports whether values of the type are kept out of records.
func (d *paramDef) secure() bool { return d.typ == TypeSecureString || d.typ == TypeSecureObject }

// convertText turns a name=value text into the declared type.
func (d *paramDef) convertText(s string) (any, error) {
	switch d.typ {
	case TypeInt:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, errorText("%q is not an integer", s)
		}
		return n, nil
	case TypeBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, errorText("%q is not true or false", s)
		}
		return b, nil
	case TypeObject, TypeSecureObject, TypeArray:
		v, err := decodeJSON([]byte(s))
		if err != nil {
			return nil, errorText("the value is not JSON: %v", err)
		}
		return v, nil
	}
	return s, nil
}

// check verifies a value against the declaration; the message says why not.
func (d *paramDef) check(v any) string {
	ok := false
	switch d.typ {
	case TypeString, TypeSecureString:
		_, ok = v.(string)
	case TypeInt:
		_, ok = v.(int64)
	case TypeBool:
		_, ok = v.(bool)
	case TypeObject, TypeSecureObject:
		_, ok = v.(map[string]any)
	case TypeArray:
		_, ok = v.([]any)
	}
	if !ok {
		return sprintf("the value is %s, but the %s's type is %s", typeName(v), d.what, d.typ)
	}
	if d.allowed != nil && !containsValue(d.allowed, v) {
		return sprintf("the value %s is not one of the allowedValues %s", shortJSON(v), shortJSON(d.allowed))
	}
	return d.checkBounds(v)
}

func (d *paramDef) checkBounds(v any) string {
	n := int64(-1)
	switch x := v.(type) {
	case string:
		n = int64(len(x))
	case []any:
		n = int64(len(x))
	case int64:
		if d.minVal != nil && x < *d.minVal {
			return sprintf("the value %d is less than minValue %d", x, *d.minVal)
		}
		if d.maxVal != nil && x > *d.maxVal {
			return sprintf("the value %d is greater than maxValue %d", x, *d.maxVal)
		}
	}
	if n >= 0 && d.minLen != nil && n < *d.minLen {
		return sprintf("the length %d is less than minLength %d", n, *d.minLen)
	}
	if n >= 0 && d.maxLen != nil && n > *d.maxLen {
		return sprintf("the length %d is greater than maxLength %d", n, *d.maxLen)
	}
	return ""
}

// containsValue compares JSON values; strings case-insensitively, as ARM
// does for allowedValues.
func containsValue(list []any, v any) bool {
	for _, x := range list {
		if a, ok := x.(string); ok {
			if b, ok := v.(string); ok && strings.EqualFold(a, b) {
				return true
			}
			continue
		}
		if shortJSON(x) == shortJSON(v) {
			return true
		}
	}
	return false
}

type textError string

func (e textError) Error() string { return string(e) }

func errorText(format string, args ...any) error { return textError(sprintf(format, args...)) }
