package armtemplate

import (
	"errors"
	"strings"
)

// Kinds of template errors; every *Error wraps one (test with errors.Is).
var (
	// ErrInvalid: the template or a parameter value breaks a rule of the
	// template language (syntax, types, allowed values, dependsOn).
	ErrInvalid = errors.New("armtemplate: invalid template")
	// ErrUnsupported: the template uses something opendps does not
	// implement (a function, a resource type, a property, copy loops).
	ErrUnsupported = errors.New("armtemplate: not supported")
	// ErrRefused: the template asks for something the control plane
	// refuses (data residency outside the regions that allow it, an
	// unknown region, an SKU other than S1).
	ErrRefused = errors.New("armtemplate: refused by the control plane")
)

// Error is one problem in a template, located by the JSON path of the
// value it is about (e.g. resources[1].properties.iotHubs[0].connectionString)
// and, for an error inside an expression, the expression's text.
type Error struct {
	Kind error  // ErrInvalid, ErrUnsupported or ErrRefused
	Path string // JSON path in the template ("" for the whole file); parameters given outside it are "parameters.NAME"
	Expr string // the expression, with its brackets, or ""
	Msg  string // what is wrong, without the location
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Expr != "" {
		b.WriteString(" (in ")
		b.WriteString(quoteExpr(e.Expr))
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the kind.
func (e *Error) Unwrap() error { return e.Kind }

func quoteExpr(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return `"` + s + `"`
}

// Errors is every problem validation found, in the order of the file. It
// is never empty when returned as an error.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.Is and errors.As see each error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// errs collects errors during validation.
type errs struct{ list Errors }

func (c *errs) add(kind error, path, expr, format string, args ...any) {
	c.list = append(c.list, &Error{Kind: kind, Path: path, Expr: expr, Msg: sprintf(format, args...)})
}

// addErr records err, which is an *Error or a plain error about path.
func (c *errs) addErr(path string, err error) {
	var e *Error
	if errors.As(err, &e) {
		if e.Path == "" {
			e.Path = path
		}
		c.list = append(c.list, e)
		return
	}
	c.list = append(c.list, &Error{Kind: ErrInvalid, Path: path, Msg: err.Error()})
}

func (c *errs) err() error {
	if len(c.list) == 0 {
		return nil
	}
	return c.list
}

// joinPath appends a property name or index to a JSON path.
func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string { return base + "[" + itoa(i) + "]" }
