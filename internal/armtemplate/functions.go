package armtemplate

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// function is a template function.
type function struct {
	name     string // as documented
	min, max int    // arity; max -1: no limit
	fn       func(e *env, c *callNode, args []any) (any, error)
}

// functions are the supported template functions, by lower-case name.
var functions = map[string]function{}

func init() {
	for _, f := range []function{
		{"parameters", 1, 1, fnParameters},
		{"variables", 1, 1, fnVariables},
		{"concat", 1, -1, fnConcat},
		{"format", 1, -1, fnFormat},
		{"toLower", 1, 1, fnCase(strings.ToLower)},
		{"toUpper", 1, 1, fnCase(strings.ToUpper)},
		{"uniqueString", 1, -1, fnUniqueString},
		{"resourceGroup", 0, 0, fnResourceGroup},
		{"subscription", 0, 0, fnSubscription},
		{"resourceId", 2, -1, fnResourceID},
		{"reference", 1, 3, fnReference},
		{"string", 1, 1, fnString},
		{"true", 0, 0, func(*env, *callNode, []any) (any, error) { return true, nil }},
		{"false", 0, 0, func(*env, *callNode, []any) (any, error) { return false, nil }},
	} {
		functions[strings.ToLower(f.name)] = f
	}
}

// FunctionNames lists the supported functions, sorted.
func FunctionNames() []string {
	var out []string
	for _, f := range functions {
		out = append(out, f.name)
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	return out
}

func stringArg(c *callNode, args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", evalErrf(ErrInvalid, c.args[i], "argument %d of %s() must be a string, not %s", i+1, functions[strings.ToLower(c.name)].name, typeName(args[i]))
	}
	return s, nil
}

func fnParameters(e *env, c *callNode, args []any) (any, error) {
	name, err := stringArg(c, args, 0)
	if err != nil {
		return nil, err
	}
	if !e.paramsAllowed {
		return nil, evalErrf(ErrInvalid, c, "parameters() cannot be used here (parameter defaults may use only functions that do not depend on other values)")
	}
	v, ok := e.params[strings.ToLower(name)]
	if !ok {
		return nil, evalErrf(ErrInvalid, c, "parameter %q is not declared in parameters", name)
	}
	return v, nil
}

func fnVariables(e *env, c *callNode, args []any) (any, error) {
	name, err := stringArg(c, args, 0)
	if err != nil {
		return nil, err
	}
	if e.vars == nil {
		return nil, evalErrf(ErrInvalid, c, "variables() cannot be used in parameters")
	}
	return e.variable(c, name)
}

// fnConcat joins strings (integers and booleans as text), or arrays.
func fnConcat(_ *env, c *callNode, args []any) (any, error) {
	if _, ok := args[0].([]any); ok {
		var out []any
		for i, a := range args {
			arr, ok := a.([]any)
			if !ok {
				return nil, evalErrf(ErrInvalid, c.args[i], "concat() of arrays: argument %d is %s, not an array", i+1, typeName(a))
			}
			out = append(out, arr...)
		}
		return out, nil
	}
	var b strings.Builder
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			if _, isInt := a.(int64); !isInt {
				return nil, evalErrf(ErrInvalid, c.args[i], "concat() of strings: argument %d is %s", i+1, typeName(a))
			}
			s, _ = render(a)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// fnFormat implements .NET composite formatting: {0}, {1}, ... with "{{"
// and "}}" for braces; format specifiers ({0:N2}) are not supported.
func fnFormat(_ *env, c *callNode, args []any) (any, error) {
	f, err := stringArg(c, args, 0)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		ch := f[i]
		switch {
		case ch == '{' && i+1 < len(f) && f[i+1] == '{', ch == '}' && i+1 < len(f) && f[i+1] == '}':
			b.WriteByte(ch)
			i++
		case ch == '{':
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				return nil, evalErrf(ErrInvalid, c, "format string %q has an unclosed '{'", f)
			}
			item := f[i+1 : i+end]
			n, err := strconv.Atoi(strings.TrimSpace(item))
			if err != nil || n < 0 {
				return nil, evalErrf(ErrUnsupported, c, "format item {%s} is not supported: use {0}, {1}, ... without format specifiers", item)
			}
			if n+1 >= len(args) {
				return nil, evalErrf(ErrInvalid, c, "format item {%d} has no argument (%d given after the format string)", n, len(args)-1)
			}
			s, ok := render(args[n+1])
			if !ok {
				return nil, evalErrf(ErrInvalid, c.args[n+1], "format() cannot render %s", typeName(args[n+1]))
			}
			b.WriteString(s)
			i += end
		case ch == '}':
			return nil, evalErrf(ErrInvalid, c, "format string %q has a '}' without '{' (write '}}')", f)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), nil
}

func fnCase(conv func(string) string) func(*env, *callNode, []any) (any, error) {
	return func(_ *env, c *callNode, args []any) (any, error) {
		s, err := stringArg(c, args, 0)
		if err != nil {
			return nil, err
		}
		return conv(s), nil
	}
}

func fnString(_ *env, c *callNode, args []any) (any, error) {
	s, ok := render(args[0])
	if !ok {
		return nil, evalErrf(ErrInvalid, c, "string() cannot convert %s", typeName(args[0]))
	}
	return s, nil
}

func fnUniqueString(_ *env, c *callNode, args []any) (any, error) {
	parts := make([]string, len(args))
	for i := range args {
		s, err := stringArg(c, args, i)
		if err != nil {
			return nil, err
		}
		parts[i] = s
	}
	return UniqueString(parts...), nil
}

func fnResourceGroup(e *env, _ *callNode, _ []any) (any, error) {
	s := e.scope
	return map[string]any{
		"id":         "/subscriptions/" + s.Subscription + "/resourceGroups/" + s.ResourceGroup,
		"name":       s.ResourceGroup,
		"type":       "Microsoft.Resources/resourceGroups",
		"location":   s.Location,
		"properties": map[string]any{"provisioningState": "Succeeded"},
	}, nil
}

func fnSubscription(e *env, _ *callNode, _ []any) (any, error) {
	s := e.scope
	return map[string]any{"id": "/subscriptions/" + s.Subscription, "subscriptionId": s.Subscription,
		"displayName": s.Subscription}, nil
}

// fnResourceID: resourceId([subscriptionId], [resourceGroupName],
// resourceType, resourceName1, [resourceName2], ...). The type is the
// first argument with a '/'.
func fnResourceID(e *env, c *callNode, args []any) (any, error) {
	strs := make([]string, len(args))
	for i := range args {
		s, err := stringArg(c, args, i)
		if err != nil {
			return nil, err
		}
		strs[i] = s
	}
	t := slices.IndexFunc(strs, func(s string) bool { return strings.Contains(s, "/") })
	if t < 0 || t > 2 {
		return nil, evalErrf(ErrInvalid, c, "resourceId() needs a resource type such as 'Microsoft.Devices/provisioningServices' as its first, second or third argument")
	}
	sub, rg := e.scope.Subscription, e.scope.ResourceGroup
	switch t {
	case 1:
		rg = strs[0]
	case 2:
		sub, rg = strs[0], strs[1]
	}
	id, err := ResourceID(sub, rg, strs[t], strs[t+1:]...)
	if err != nil {
		return nil, evalErrf(ErrInvalid, c, "%s", err)
	}
	return id, nil
}

// ResourceID builds the id of a resource of type typ (namespace/type[/child...])
// named by one name per type segment.
func ResourceID(sub, rg, typ string, names ...string) (string, error) {
	segs := strings.Split(strings.Trim(typ, "/"), "/")
	if len(segs) < 2 || len(names) != len(segs)-1 {
		return "", fmt.Errorf("resource type %q needs %d name(s), got %d", typ, max(len(segs)-1, 1), len(names))
	}
	var b strings.Builder
	b.WriteString("/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/" + segs[0])
	for i, n := range names {
		if n == "" || strings.Contains(n, "/") {
			return "", fmt.Errorf("resource name %q is not a single name segment", n)
		}
		b.WriteString("/" + segs[i+1] + "/" + n)
	}
	return b.String(), nil
}

// fnReference: reference(resourceNameOrId, [apiVersion], ['Full']).
func fnReference(e *env, c *callNode, args []any) (any, error) {
	target, err := stringArg(c, args, 0)
	if err != nil {
		return nil, err
	}
	full := false
	if len(args) == 3 {
		mode, err := stringArg(c, args, 2)
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(mode, "Full") {
			return nil, evalErrf(ErrInvalid, c, "the third argument of reference() must be 'Full', not %q", mode)
		}
		full = true
	}
	if e.ref == nil {
		return nil, evalErrf(ErrUnsupported, c, "reference() is supported only in outputs")
	}
	id, ok := e.resources[strings.ToLower(target)]
	if !ok {
		return nil, evalErrf(ErrUnsupported, c, "reference(%q): only resources deployed by this template can be referenced (by name or resourceId); declared: %s",
			target, strings.Join(e.declaredNames(), ", "))
	}
	v, err := e.ref(id, full)
	if err != nil {
		return nil, evalErrf(ErrInvalid, c, "reference(%q): %v", target, err)
	}
	return v, nil
}

func (e *env) declaredNames() []string {
	var out []string
	for k := range e.resources {
		if !strings.HasPrefix(k, "/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"(none)"}
	}
	return out
}

// sortedKeys is maps.Keys sorted.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
