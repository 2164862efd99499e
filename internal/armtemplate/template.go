package armtemplate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Template is a parsed deployment template (JSON). Create it with Parse;
// Build validates it with parameter values and makes a Plan.
type Template struct {
	Schema         string
	ContentVersion string
	// Hash identifies the template's content (hex SHA-256 of its bytes,
	// shortened), shown in deployment records.
	Hash string

	parameters map[string]any // as written
	variables  map[string]any
	resources  []any
	outputs    map[string]any
	problems   errs // found by Parse, reported by Build
}

// top-level template keys: required, accepted, and known but unsupported.
var (
	topKnown       = map[string]bool{"$schema": true, "contentversion": true, "parameters": true, "variables": true, "resources": true, "outputs": true, "metadata": true, "apiprofile": true}
	topUnsupported = map[string]string{
		"functions":       "user-defined functions are not supported",
		"definitions":     "user-defined types are not supported",
		"languageversion": "languageVersion 2.0 (symbolic resource names) is not supported; use a resources array",
		"imports":         "imports are not supported",
	}
)

// Parse decodes a template. Only malformed JSON is an error here; every
// other problem is reported by Build, with the others, by JSON path.
func Parse(data []byte) (*Template, error) {
	v, err := decodeJSON(data)
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Msg: "the template is not valid JSON: " + err.Error()}
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Kind: ErrInvalid, Msg: "the template must be a JSON object"}
	}
	sum := sha256.Sum256(data)
	t := &Template{Hash: hex.EncodeToString(sum[:8])}
	for _, k := range sortedKeys(top) {
		lk := strings.ToLower(k)
		if why, bad := topUnsupported[lk]; bad {
			t.problems.add(ErrUnsupported, k, "", "%s", why)
		} else if !topKnown[lk] {
			t.problems.add(ErrInvalid, k, "", "%q is not a template property (expected $schema, contentVersion, parameters, variables, resources, outputs)", k)
		}
	}
	t.Schema = t.str(top, "$schema", true)
	t.ContentVersion = t.str(top, "contentVersion", true)
	t.parameters = t.object(top, "parameters")
	t.variables = t.object(top, "variables")
	t.outputs = t.object(top, "outputs")
	switch r := lookupKey(top, "resources").(type) {
	case []any:
		t.resources = r
	case nil:
		t.problems.add(ErrInvalid, "resources", "", "the template has no resources array")
	default:
		t.problems.add(ErrInvalid, "resources", "", "resources must be an array, not %s", typeName(r))
	}
	return t, nil
}

func (t *Template) str(top map[string]any, key string, required bool) string {
	switch v := lookupKey(top, key).(type) {
	case string:
		return v
	case nil:
		if required {
			t.problems.add(ErrInvalid, key, "", "%s is required", key)
		}
	default:
		t.problems.add(ErrInvalid, key, "", "%s must be a string, not %s", key, typeName(v))
	}
	return ""
}

func (t *Template) object(top map[string]any, key string) map[string]any {
	switch v := lookupKey(top, key).(type) {
	case map[string]any:
		return v
	case nil:
		return map[string]any{}
	default:
		t.problems.add(ErrInvalid, key, "", "%s must be an object, not %s", key, typeName(v))
		return map[string]any{}
	}
}

// lookupKey returns m's value of key, matched case-insensitively (ARM
// property names are case-insensitive).
func lookupKey(m map[string]any, key string) any {
	v, _ := lookupFold(m, key)
	return v
}

// decodeJSON decodes one JSON value with integers as int64.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return numbers(v), nil
}

// numbers replaces json.Number by int64 (or float64 when not integral).
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, err := x.Float64()
		if err != nil || math.IsInf(f, 0) {
			return x.String()
		}
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// DecodeJSON decodes a JSON value as templates see values: integers as
// int64, other numbers float64 (for reference() answers built from JSON).
func DecodeJSON(data []byte) (any, error) { return decodeJSON(data) }
