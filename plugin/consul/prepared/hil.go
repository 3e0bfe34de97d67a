package prepared

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Consul interpolates template fields with HIL (github.com/hashicorp/hil),
// which this module does not require. This file holds the part of HIL that a
// prepared query template can usefully reach: literals with the "$$" escape,
// the variables and the match() function that Consul defines
// (agent/consul/prepared_query/template.go:143-172), quoted strings, and
// integer arithmetic (Consul's own tests use "${40 + 2}"). The rest of HIL
// (comparisons, conditionals, floats, booleans, indexing, implicit string to
// number conversions, nested interpolation in quoted strings) fails with
// ErrUnsupported: such a template may be valid for Consul, so the caller must
// let Consul answer it rather than call it broken.

// ErrUnsupported marks a template that uses a part of HIL this package does
// not evaluate. Consul may well render it, so the query must be passed on.
var ErrUnsupported = errors.New("unsupported by the replica's template evaluator")

// hilNode is a parsed HIL expression.
type hilNode any

type (
	hilOutput []hilNode // concatenation of the parts of an interpolated string
	hilString string
	hilInt    int
	hilVar    string
	hilCall   struct {
		fn   string
		args []hilNode
	}
	hilArith struct {
		op   byte // + - * / %
		l, r hilNode
	}
)

// hilScope is what an evaluation can see: Consul's variables and match().
type hilScope struct {
	vars  map[string]string
	match []string
}

// parseHIL parses a whole field value, as hil.Parse does.
func parseHIL(s string) (hilNode, error) {
	p := &hilParser{s: s}
	var out hilOutput
	for p.i < len(p.s) {
		if p.s[p.i] == '$' && p.i+1 < len(p.s) && p.s[p.i+1] == '{' {
			p.i += 2
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			p.space()
			if !p.eat('}') {
				return nil, p.expected(`"}"`)
			}
			out = append(out, e)
			continue
		}
		out = append(out, hilString(p.literal()))
	}
	if len(out) == 0 {
		return hilString(""), nil
	}
	return out, nil
}

type hilParser struct {
	s string
	i int
}

// literal reads text up to the next "${". "$$" stands for "$", so "$${"
// is a literal "${" (hil scanner/scanner.go scanLiteral and
// parser/parser.go parseStringToken).
func (p *hilParser) literal() string {
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '$' && p.i+1 < len(p.s) {
			switch p.s[p.i+1] {
			case '{':
				return b.String()
			case '$':
				b.WriteByte('$')
				p.i += 2
				continue
			}
		}
		b.WriteByte(c)
		p.i++
	}
	return b.String()
}

func (p *hilParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *hilParser) peek() byte {
	p.space()
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

func (p *hilParser) eat(c byte) bool {
	if p.peek() == c && p.i < len(p.s) {
		p.i++
		return true
	}
	return false
}

func (p *hilParser) expected(what string) error {
	if p.i >= len(p.s) {
		return fmt.Errorf("expected %s but found end of string", what)
	}
	return fmt.Errorf("expected %s but found %q at column %d", what, p.s[p.i:p.i+1], p.i+1)
}

func (p *hilParser) unsupported(what string) error {
	return fmt.Errorf("%s at column %d: %w", what, p.i+1, ErrUnsupported)
}

// expr parses an expression with HIL's precedence (parser/binary_op.go):
// only the additive and multiplicative levels are evaluated here.
func (p *hilParser) expr() (hilNode, error) {
	l, err := p.binary(0)
	if err != nil {
		return nil, err
	}
	switch p.peek() {
	case '?', '=', '!', '<', '>', '&', '|':
		return nil, p.unsupported("comparison or conditional")
	}
	return l, nil
}

var hilLevels = [...]string{"+-", "*/%"}

func (p *hilParser) binary(level int) (hilNode, error) {
	if level == len(hilLevels) {
		return p.term()
	}
	l, err := p.binary(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		c := p.peek()
		if c == 0 || !strings.ContainsRune(hilLevels[level], rune(c)) {
			return l, nil
		}
		p.i++
		r, err := p.binary(level + 1)
		if err != nil {
			return nil, err
		}
		l = hilArith{op: c, l: l, r: r}
	}
}

func (p *hilParser) term() (hilNode, error) {
	c := p.peek()
	switch {
	case c == '(':
		p.i++
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.eat(')') {
			return nil, p.expected(`")"`)
		}
		return e, nil
	case c == '"':
		p.i++
		return p.quoted()
	case c >= '0' && c <= '9':
		return p.number()
	case c == '-':
		// HIL reads a unary minus as 0 - operand (parser/parser.go).
		p.i++
		e, err := p.term()
		if err != nil {
			return nil, err
		}
		return hilArith{op: '-', l: hilInt(0), r: e}, nil
	case c == '!':
		return nil, p.unsupported("boolean negation")
	case p.identStart():
		return p.scope()
	default:
		return nil, p.expected("expression")
	}
}

func (p *hilParser) number() (hilNode, error) {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i+1 < len(p.s) && p.s[p.i] == '.' && p.s[p.i+1] >= '0' && p.s[p.i+1] <= '9' {
		return nil, p.unsupported("float literal")
	}
	v, err := strconv.Atoi(p.s[start:p.i])
	if err != nil {
		return nil, fmt.Errorf("invalid integer: %w", err)
	}
	return hilInt(v), nil
}

// quoted reads a string literal after its opening quote, with HIL's
// escapes: \\, \n, \" and $$ (parser/parser.go parseStringToken).
func (p *hilParser) quoted() (hilNode, error) {
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return hilString(b.String()), nil
		case c == '$' && p.i+1 < len(p.s) && p.s[p.i+1] == '{':
			return nil, p.unsupported("interpolation inside a quoted string")
		case c == '$' && p.i+1 < len(p.s) && p.s[p.i+1] == '$':
			b.WriteByte('$')
			p.i += 2
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return nil, errors.New("unfinished backslash escape sequence")
			}
			switch p.s[p.i+1] {
			case '\\':
				b.WriteByte('\\')
			case 'n':
				b.WriteByte('\n')
			case '"':
				b.WriteByte('"')
			default:
				return nil, errors.New("invalid backslash escape sequence")
			}
			p.i += 2
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return nil, errors.New("unterminated quoted string")
}

func (p *hilParser) identStart() bool {
	if p.i >= len(p.s) {
		return false
	}
	c := p.s[p.i]
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' {
		return true
	}
	r, _ := utf8.DecodeRuneInString(p.s[p.i:])
	return unicode.IsLetter(r)
}

// scope reads a variable or a function call. HIL identifiers take letters,
// digits, '_', '-' and '.', so "name.full-x" is one (unknown) variable
// (scanner/scanner.go scanIdentifier).
func (p *hilParser) scope() (hilNode, error) {
	start := p.i
	for p.i < len(p.s) {
		r, size := utf8.DecodeRuneInString(p.s[p.i:])
		if r == '*' && p.i > start && p.s[p.i-1] == '.' {
			return nil, p.unsupported("splat")
		}
		if !(r == '_' || r == '-' || r == '.' || unicode.IsNumber(r) || unicode.IsLetter(r) || unicode.IsMark(r)) {
			break
		}
		p.i += size
	}
	name := p.s[start:p.i]
	if name == "true" || name == "false" {
		return nil, p.unsupported("boolean literal")
	}
	switch p.peek() {
	case '[':
		return nil, p.unsupported("index")
	case '(':
		p.i++
		call := hilCall{fn: name}
		for p.peek() != ')' {
			arg, err := p.expr()
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, arg)
			if !p.eat(',') {
				break
			}
		}
		if !p.eat(')') {
			return nil, p.expected(`")"`)
		}
		return call, nil
	}
	return hilVar(name), nil
}

// evalHIL evaluates a parsed field to a string. A lone integer expression
// turns into its decimal form, as HIL's implicit int-to-string conversion
// does for an output ("${40 + 2}" renders "42").
func evalHIL(n hilNode, sc *hilScope) (string, error) {
	v, err := sc.eval(n)
	if err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case int:
		return strconv.FormatInt(int64(v), 10), nil
	}
	return "", fmt.Errorf("unexpected value %v", v)
}

func (sc *hilScope) eval(n hilNode) (any, error) {
	switch n := n.(type) {
	case hilString:
		return string(n), nil
	case hilInt:
		return int(n), nil
	case hilOutput:
		var b strings.Builder
		for _, part := range n {
			s, err := evalHIL(part, sc)
			if err != nil {
				return nil, err
			}
			b.WriteString(s)
		}
		return b.String(), nil
	case hilVar:
		v, ok := sc.vars[string(n)]
		if !ok {
			return nil, fmt.Errorf("unknown variable accessed: %s", string(n))
		}
		return v, nil
	case hilCall:
		if n.fn != "match" {
			return nil, fmt.Errorf("unknown function called: %s", n.fn)
		}
		if len(n.args) != 1 {
			return nil, fmt.Errorf("match: expected 1 arguments, got %d", len(n.args))
		}
		a, err := sc.eval(n.args[0])
		if err != nil {
			return nil, err
		}
		i, ok := a.(int)
		if !ok {
			return nil, fmt.Errorf("match: string argument: %w", ErrUnsupported)
		}
		// Consul's match() never fails: out of range is "" (template.go:128-139).
		if i >= 0 && i < len(sc.match) {
			return sc.match[i], nil
		}
		return "", nil
	case hilArith:
		l, err := sc.eval(n.l)
		if err != nil {
			return nil, err
		}
		r, err := sc.eval(n.r)
		if err != nil {
			return nil, err
		}
		a, okA := l.(int)
		b, okB := r.(int)
		if !okA || !okB {
			return nil, fmt.Errorf("arithmetic on strings: %w", ErrUnsupported)
		}
		switch n.op {
		case '+':
			return a + b, nil
		case '-':
			return a - b, nil
		case '*':
			return a * b, nil
		case '/':
			if b == 0 {
				return nil, errors.New("divide by zero")
			}
			return a / b, nil
		default:
			if b == 0 {
				return nil, errors.New("divide by zero")
			}
			return a % b, nil
		}
	}
	return nil, fmt.Errorf("unknown node %T", n)
}
