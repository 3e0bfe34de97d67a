package prepared

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hil"
	"github.com/hashicorp/hil/ast"
)

// evalConfig is the scope Consul's Render gives HIL (template.go:121-172):
// four string variables and match(), which never fails: it returns "" for
// an index the regexp did not capture. A fresh one per render, as HIL adds
// its builtins to the scope it is given.
func (t *template) evalConfig(name, segment string) *hil.EvalConfig {
	var matches []string
	if t.re != nil {
		matches = t.re.FindStringSubmatch(name)
	}
	match := ast.Function{
		ArgTypes:   []ast.Type{ast.TypeInt},
		ReturnType: ast.TypeString,
		Callback: func(inputs []any) (any, error) {
			i, ok := inputs[0].(int)
			if ok && i >= 0 && i < len(matches) {
				return matches[i], nil
			}
			return "", nil
		},
	}
	// HIL adds its 15 builtins to the map: sized for them, it does not grow.
	funcs := make(map[string]ast.Function, 16)
	funcs["match"] = match
	str := func(s string) ast.Variable { return ast.Variable{Type: ast.TypeString, Value: s} }
	return &hil.EvalConfig{
		GlobalScope: &ast.BasicScope{
			VarMap: map[string]ast.Variable{
				"name.full":     str(name),
				"name.prefix":   str(t.query.Name),
				"name.suffix":   str(strings.TrimPrefix(name, t.query.Name)),
				"agent.segment": str(segment),
			},
			FuncMap: funcs,
		},
	}
}

// eval evaluates tree, the field's own or a detached copy of it, whose
// source text is src, with Consul's error messages. A panic in HIL is an
// error here; Consul 1.22.5's agent crashes on it when a DNS question runs
// the query (its DNS server recovers no panic; checked with a dev agent).
func (f *field) eval(tree ast.Node, src string, cfg *hil.EvalConfig) (s string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bad evaluation for '%s' in Service%s: HIL panicked: %v", src, f.path, p)
		}
	}()
	res, err := hil.Eval(tree, cfg)
	if err != nil {
		return "", fmt.Errorf("bad evaluation for '%s' in Service%s: %w", src, f.path, err)
	}
	if res.Type != hil.TypeString {
		return "", fmt.Errorf("expected Service%s field to be a string, got %s", f.path, res.Type)
	}
	return res.Value.(string), nil
}

// readsScope reports whether a tree reads a variable or calls match(): the
// rest of what HIL evaluates (literals, arithmetic, comparisons,
// conditionals, its builtin conversions) gives the same value every time.
func readsScope(tree ast.Node) bool {
	reads := false
	tree.Accept(func(n ast.Node) ast.Node {
		switch n := n.(type) {
		case *ast.VariableAccess:
			reads = true
		case *ast.Call:
			reads = reads || n.Func == "match"
		}
		return n
	})
	return reads
}

// detach copies the nodes of a compiled tree that an evaluation writes to,
// so that renders may run at once: HIL's Accept stores every child back into
// its parent (ast/output.go) and its type check adds implicit conversions.
// Consul evaluates one tree again and again; after its first evaluation
// (the test render) the type check leaves it as it is, except around an
// implicit string to number conversion, which it wraps in a second one
// (hil's builtinStringToInt declares an int argument), whose evaluation then
// panics. Each render evaluates a fresh copy of the tree as the test render
// left it, which is what Consul's first render does, and what every later
// one does as well: the same value, or a failure. Literals and variable
// accesses have no children and are shared.
func detach(n ast.Node) ast.Node {
	switch n := n.(type) {
	case *ast.Output:
		return &ast.Output{Exprs: detachAll(n.Exprs), Posx: n.Posx}
	case *ast.Call:
		return &ast.Call{Func: n.Func, Args: detachAll(n.Args), Posx: n.Posx}
	case *ast.Arithmetic:
		return &ast.Arithmetic{Op: n.Op, Exprs: detachAll(n.Exprs), Posx: n.Posx}
	case *ast.Conditional:
		return &ast.Conditional{CondExpr: detach(n.CondExpr), TrueExpr: detach(n.TrueExpr), FalseExpr: detach(n.FalseExpr), Posx: n.Posx}
	case *ast.Index:
		return &ast.Index{Target: detach(n.Target), Key: detach(n.Key), Posx: n.Posx}
	}
	return n
}

func detachAll(ns []ast.Node) []ast.Node {
	c := make([]ast.Node, len(ns))
	for i, n := range ns {
		c[i] = detach(n)
	}
	return c
}
