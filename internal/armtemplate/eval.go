package armtemplate

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Values of the language are JSON values decoded as: string, int64, bool,
// []any, map[string]any and nil (float64 only for non-integral numbers).

// evalError is an error of an expression at a byte offset of its text.
type evalError struct {
	kind error
	at   int
	msg  string
}

func (e *evalError) Error() string { return e.msg }

func evalErrf(kind error, n node, format string, args ...any) error {
	return &evalError{kind: kind, at: n.pos(), msg: sprintf(format, args...)}
}

// refFunc resolves reference(): the resource of id, its properties or,
// with full, the whole resource.
type refFunc func(id string, full bool) (any, error)

// env is what expressions see.
type env struct {
	scope  Scope
	params map[string]any    // lower-case name -> value
	vars   map[string]any    // lower-case name -> raw value
	names  map[string]string // lower-case name -> the name as declared (variables)
	done   map[string]any    // evaluated variables
	active map[string]bool   // variables being evaluated (cycle detection)
	// resources maps lower-case resource names and ids of the template to
	// their ids (for reference()).
	resources map[string]string
	// ref is nil where reference() is not allowed (everywhere but outputs).
	ref refFunc
	// paramsAllowed is false while parameters themselves are being
	// evaluated before their values are all known.
	paramsAllowed bool
}

// evalString evaluates the JSON string s found at path.
func (e *env) evalString(path, s string) (any, error) {
	src, isExpr, lit := classify(s)
	if !isExpr {
		return lit, nil
	}
	n, err := parseExpr(src)
	if err != nil {
		return nil, &Error{Kind: ErrInvalid, Path: path, Expr: s, Msg: "syntax error: " + err.Error()}
	}
	v, err := e.eval(n)
	if err != nil {
		var ee *evalError
		if asEval(err, &ee) {
			return nil, &Error{Kind: ee.kind, Path: path, Expr: s, Msg: ee.msg}
		}
		return nil, err // an *Error from a variable, located there
	}
	return v, nil
}

func asEval(err error, target **evalError) bool {
	e, ok := err.(*evalError)
	if ok {
		*target = e
	}
	return ok
}

// evalDeep evaluates every string of the JSON value v (at path),
// collecting errors; object keys are literal.
func (e *env) evalDeep(path string, v any, c *errs) any {
	switch x := v.(type) {
	case string:
		out, err := e.evalString(path, x)
		if err != nil {
			c.addErr(path, err)
			return nil
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = e.evalDeep(indexPath(path, i), el, c)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			out[k] = e.evalDeep(joinPath(path, k), x[k], c)
		}
		return out
	default:
		return v
	}
}

func (e *env) eval(n node) (any, error) {
	switch x := n.(type) {
	case *strLit:
		return x.s, nil
	case *intLit:
		return x.n, nil
	case *memberNode:
		v, err := e.eval(x.x)
		if err != nil {
			return nil, err
		}
		return member(x, v, x.name)
	case *indexNode:
		return e.index(x)
	case *callNode:
		return e.call(x)
	}
	return nil, fmt.Errorf("armtemplate: unknown node %T", n)
}

func member(n node, v any, name string) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, evalErrf(ErrInvalid, n, "cannot read property %q of %s", name, typeName(v))
	}
	if val, ok := lookupFold(m, name); ok {
		return val, nil
	}
	return nil, evalErrf(ErrInvalid, n, "the object has no property %q (it has %s)", name, strings.Join(slices.Sorted(maps.Keys(m)), ", "))
}

func (e *env) index(x *indexNode) (any, error) {
	v, err := e.eval(x.x)
	if err != nil {
		return nil, err
	}
	i, err := e.eval(x.idx)
	if err != nil {
		return nil, err
	}
	switch k := i.(type) {
	case string:
		return member(x, v, k)
	case int64:
		a, ok := v.([]any)
		if !ok {
			return nil, evalErrf(ErrInvalid, x, "cannot index %s with an integer", typeName(v))
		}
		if k < 0 || k >= int64(len(a)) {
			return nil, evalErrf(ErrInvalid, x, "index %d is out of range (the array has %d elements)", k, len(a))
		}
		return a[k], nil
	}
	return nil, evalErrf(ErrInvalid, x, "an index must be a string or an integer, not %s", typeName(i))
}

func lookupFold(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

func (e *env) call(c *callNode) (any, error) {
	f, ok := functions[strings.ToLower(c.name)]
	if !ok {
		return nil, evalErrf(ErrUnsupported, c, "unknown function %q; supported: %s", c.name, strings.Join(FunctionNames(), ", "))
	}
	if len(c.args) < f.min || (f.max >= 0 && len(c.args) > f.max) {
		return nil, evalErrf(ErrInvalid, c, "%s() takes %s, not %d", f.name, arity(f.min, f.max), len(c.args))
	}
	args := make([]any, len(c.args))
	for i, a := range c.args {
		v, err := e.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	return f.fn(e, c, args)
}

func arity(min, max int) string {
	switch {
	case min == max && min == 1:
		return "1 argument"
	case min == max:
		return sprintf("%d arguments", min)
	case max < 0:
		return sprintf("at least %d argument(s)", min)
	}
	return sprintf("%d to %d arguments", min, max)
}

// variable returns the value of variable name, evaluating it on first use.
func (e *env) variable(c *callNode, name string) (any, error) {
	key := strings.ToLower(name)
	if v, ok := e.done[key]; ok {
		return v, nil
	}
	raw, ok := e.vars[key]
	if !ok {
		return nil, evalErrf(ErrInvalid, c, "variable %q is not declared in variables", name)
	}
	if e.active[key] {
		return nil, evalErrf(ErrInvalid, c, "variable %q refers to itself (a cycle through variables)", name)
	}
	e.active[key] = true
	defer delete(e.active, key)
	var ce errs
	v := e.evalDeep(joinPath("variables", e.names[key]), raw, &ce)
	if err := ce.err(); err != nil {
		return nil, ce.list[0]
	}
	e.done[key] = v
	return v, nil
}

// render is a value as text in concat() and format().
func render(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int64:
		return itoa64(x), true
	case bool:
		if x {
			return "True", true
		}
		return "False", true
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b), true
	}
	return "", false
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
