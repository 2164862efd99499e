package armtemplate

import (
	"fmt"
	"strconv"
	"strings"
)

// The expression language (docs/deployments.md): a JSON string that starts
// with "[" and ends with "]" is an expression, except that a string
// starting with "[[" is the literal string without its first "[". Inside
// the brackets:
//
//	expr    = primary { "." ident | "[" expr "]" }
//	primary = string | integer | ident "(" [ expr { "," expr } ] ")"
//	string  = "'" { char | "''" } "'"
//	integer = [ "-" ] digit { digit }
//
// Function names are case-insensitive.

// maxExprLen and maxDepth bound what the parser accepts: a template is
// trusted input of an operator, but a runaway nesting must not exhaust the
// stack.
const (
	maxExprLen = 24 << 10
	maxDepth   = 64
)

// node is a parsed expression.
type node interface{ pos() int }

type (
	strLit struct {
		at int
		s  string
	}
	intLit struct {
		at int
		n  int64
	}
	callNode struct {
		at   int
		name string // as written
		args []node
	}
	memberNode struct {
		at   int
		x    node
		name string
	}
	indexNode struct {
		at  int
		x   node
		idx node
	}
)

func (n *strLit) pos() int     { return n.at }
func (n *intLit) pos() int     { return n.at }
func (n *callNode) pos() int   { return n.at }
func (n *memberNode) pos() int { return n.at }
func (n *indexNode) pos() int  { return n.at }

// classify tells what a JSON string is: an expression (its text between
// the brackets), or a literal (its value, "[[" unescaped).
func classify(s string) (expr string, isExpr bool, literal string) {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if s[1] == '[' {
			return "", false, s[1:]
		}
		return s[1 : len(s)-1], true, ""
	}
	return "", false, s
}

// syntaxError is a parse error at a byte offset of the expression.
type syntaxError struct {
	at  int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.at+1) }

// parseExpr parses the text between the brackets of an expression.
func parseExpr(src string) (node, error) {
	if len(src) > maxExprLen {
		return nil, &syntaxError{0, fmt.Sprintf("expression longer than %d bytes", maxExprLen)}
	}
	p := &parser{src: src}
	p.skip()
	if p.i >= len(p.src) {
		return nil, &syntaxError{0, "empty expression"}
	}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	p.skip()
	if p.i < len(p.src) {
		return nil, &syntaxError{p.i, fmt.Sprintf("unexpected %q", p.src[p.i])}
	}
	return n, nil
}

type parser struct {
	src string
	i   int
}

func (p *parser) skip() {
	for p.i < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.i]) >= 0 {
		p.i++
	}
}

func (p *parser) peek() byte {
	p.skip()
	if p.i < len(p.src) {
		return p.src[p.i]
	}
	return 0
}

func (p *parser) expect(c byte) error {
	if p.peek() != c {
		return p.unexpected(fmt.Sprintf("%q", c))
	}
	p.i++
	return nil
}

func (p *parser) unexpected(want string) error {
	if p.i >= len(p.src) {
		return &syntaxError{p.i, "unexpected end of expression, want " + want}
	}
	return &syntaxError{p.i, fmt.Sprintf("unexpected %q, want %s", p.src[p.i], want)}
}

func (p *parser) expr(depth int) (node, error) {
	if depth > maxDepth {
		return nil, &syntaxError{p.i, fmt.Sprintf("expression nested deeper than %d", maxDepth)}
	}
	n, err := p.primary(depth)
	if err != nil {
		return nil, err
	}
	for {
		switch p.peek() {
		case '.':
			at := p.i
			p.i++
			p.skip()
			name := p.ident()
			if name == "" {
				return nil, p.unexpected("a property name after '.'")
			}
			n = &memberNode{at: at, x: n, name: name}
		case '[':
			at := p.i
			p.i++
			idx, err := p.expr(depth + 1)
			if err != nil {
				return nil, err
			}
			if err := p.expect(']'); err != nil {
				return nil, err
			}
			n = &indexNode{at: at, x: n, idx: idx}
		default:
			return n, nil
		}
	}
}

func (p *parser) primary(depth int) (node, error) {
	c := p.peek()
	at := p.i
	switch {
	case c == '\'':
		s, err := p.str()
		return &strLit{at: at, s: s}, err
	case c == '-' || isDigit(c):
		return p.integer()
	case isIdentStart(c):
		name := p.ident()
		if p.peek() != '(' {
			return nil, &syntaxError{at, fmt.Sprintf("%q is not a function call (missing '('); strings are written in single quotes", name)}
		}
		p.i++
		call := &callNode{at: at, name: name}
		if p.peek() == ')' {
			p.i++
			return call, nil
		}
		for {
			arg, err := p.expr(depth + 1)
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, arg)
			switch p.peek() {
			case ',':
				p.i++
			case ')':
				p.i++
				return call, nil
			default:
				return nil, p.unexpected("',' or ')'")
			}
		}
	default:
		return nil, p.unexpected("a string, an integer or a function call")
	}
}

// str reads a single-quoted string; ” is a quote.
func (p *parser) str() (string, error) {
	start := p.i
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.src) {
		c := p.src[p.i]
		p.i++
		if c != '\'' {
			b.WriteByte(c)
			continue
		}
		if p.i < len(p.src) && p.src[p.i] == '\'' {
			b.WriteByte('\'')
			p.i++
			continue
		}
		return b.String(), nil
	}
	return "", &syntaxError{start, "unterminated string"}
}

func (p *parser) integer() (node, error) {
	at := p.i
	if p.src[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.src) && isDigit(p.src[p.i]) {
		p.i++
	}
	n, err := strconv.ParseInt(p.src[at:p.i], 10, 64)
	if err != nil {
		return nil, &syntaxError{at, fmt.Sprintf("bad integer %q", p.src[at:p.i])}
	}
	return &intLit{at: at, n: n}, nil
}

func (p *parser) ident() string {
	start := p.i
	for p.i < len(p.src) && (isIdentStart(p.src[p.i]) || isDigit(p.src[p.i])) {
		p.i++
	}
	return p.src[start:p.i]
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
