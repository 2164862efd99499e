package armtemplate

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/regions"
)

// testEnv is an env with a few parameters and variables.
func testEnv() *env {
	e := &env{scope: Scope{Subscription: "sub-1", ResourceGroup: "rg-1", Location: "westeurope"}, paramsAllowed: true,
		params: map[string]any{"name": "Contoso", "count": int64(3), "list": []any{"a", "b"}, "obj": map[string]any{"Inner": map[string]any{"x": "y"}}},
		vars:   map[string]any{"prefix": "[toLower(parameters('name'))]", "loopa": "[variables('loopB')]", "loopb": "[variables('loopA')]"},
		names:  map[string]string{"prefix": "prefix", "loopa": "loopA", "loopb": "loopB"},
		done:   map[string]any{}, active: map[string]bool{}, resources: map[string]string{}}
	return e
}

func TestEvaluate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"plain text", "plain text"},
		{"[[not an expression]", "[not an expression]"},
		{"[[", "[["},                   // too short to be an expression: a literal
		{"[concat('a'", "[concat('a'"}, // no closing bracket: a literal
		{"[ 'quoted ''x''' ]", "quoted 'x'"},
		{"[parameters('name')]", "Contoso"},
		{"[PARAMETERS('NAME')]", "Contoso"},
		{"[parameters('count')]", int64(3)},
		{"[parameters('list')[1]]", "b"},
		{"[parameters('obj').inner.x]", "y"},
		{"[parameters('obj')['Inner']['x']]", "y"},
		{"[variables('prefix')]", "contoso"},
		{"[concat('a', 'b', parameters('count'))]", "ab3"},
		{"[concat(parameters('list'), parameters('list'))]", []any{"a", "b", "a", "b"}},
		{"[format('{0}-{1}-{{x}}', 'a', 7)]", "a-7-{x}"},
		{"[toUpper('abc')]", "ABC"},
		{"[string(true())]", "True"},
		{"[resourceGroup().location]", "westeurope"},
		{"[resourceGroup().id]", "/subscriptions/sub-1/resourceGroups/rg-1"},
		{"[subscription().subscriptionId]", "sub-1"},
		{"[uniqueString('test')]", "rbgf3xv4ufgzg"},
		{"[uniqueString('hello', 'world')]", "a7wkljktk6wne"},
		{"[resourceId('Microsoft.Devices/provisioningServices', 'dps1')]", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Devices/provisioningServices/dps1"},
		{"[resourceId('other-rg', 'Microsoft.Devices/provisioningServices/certificates', 'dps1', 'ca')]", "/subscriptions/sub-1/resourceGroups/other-rg/providers/Microsoft.Devices/provisioningServices/dps1/certificates/ca"},
		{"[resourceId('s2', 'rg2', 'Microsoft.Devices/provisioningServices', 'd')]", "/subscriptions/s2/resourceGroups/rg2/providers/Microsoft.Devices/provisioningServices/d"},
		{"[-5]", int64(-5)},
	} {
		got, err := testEnv().evalString("x", tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

func TestEvaluateErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind error
		msg  string
	}{
		{"[newGuid()]", ErrUnsupported, `unknown function "newGuid"`},
		{"[parameters('nope')]", ErrInvalid, `parameter "nope" is not declared`},
		{"[variables('nope')]", ErrInvalid, `variable "nope" is not declared`},
		{"[variables('loopA')]", ErrInvalid, "refers to itself"},
		{"[concat('a', parameters('obj'))]", ErrInvalid, "argument 2 is an object"},
		{"[toLower(1)]", ErrInvalid, "must be a string, not an integer"},
		{"[toLower('a', 'b')]", ErrInvalid, "takes 1 argument, not 2"},
		{"[resourceGroup(1)]", ErrInvalid, "takes 0 arguments"},
		{"[format('{0:N2}', 1)]", ErrUnsupported, "format specifiers"},
		{"[format('{1}', 1)]", ErrInvalid, "has no argument"},
		{"[parameters('list')[5]]", ErrInvalid, "out of range"},
		{"[parameters('obj').missing]", ErrInvalid, `no property "missing"`},
		{"[resourceId('Microsoft.Devices/provisioningServices')]", ErrInvalid, "takes at least 2"},
		{"[resourceId('Microsoft.Devices/provisioningServices/certificates', 'a')]", ErrInvalid, "needs 2 name(s)"},
		{"[reference('dps')]", ErrUnsupported, "only in outputs"},
		{"[concat('a',]", ErrInvalid, "syntax error: unexpected end of expression"},
		{"[concat('a' 'b')]", ErrInvalid, "want ',' or ')'"},
		{"[parameters]", ErrInvalid, "not a function call"},
		{"['unterminated]", ErrInvalid, "unterminated string"},
		{"[]", ErrInvalid, "empty expression"},
		{"[concat('a')) ]", ErrInvalid, `unexpected ')'`},
	} {
		_, err := testEnv().evalString("resources[0].name", tc.in)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%s: error %v, want an *Error", tc.in, err)
			continue
		}
		if !errors.Is(err, tc.kind) || !strings.Contains(e.Msg, tc.msg) || e.Expr != tc.in || e.Path != "resources[0].name" {
			if e.Path != "variables.loopB" { // a variable's error is located in the variable
				t.Errorf("%s: %v (kind %v, path %q, expr %q), want %v containing %q", tc.in, err, e.Kind, e.Path, e.Expr, tc.kind, tc.msg)
			}
		}
	}
}

func TestErrorText(t *testing.T) {
	_, err := testEnv().evalString("resources[1].properties.iotHubs[0].connectionString", "[parameters('hub')]")
	want := `resources[1].properties.iotHubs[0].connectionString: parameter "hub" is not declared in parameters (in "[parameters('hub')]")`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant\n%s", err, want)
	}
}

// FuzzExpression: the parser and evaluator never panic, and every failure
// is an *Error naming the path and the expression.
func FuzzExpression(f *testing.F) {
	for _, s := range []string{"[concat('a', parameters('name'))]", "[[x]", "[format('{0}', 1)]", "[parameters('obj').inner['x']]",
		"[resourceId('a/b', 'c')]", "[uniqueString(resourceGroup().id)]", "['it''s']", "[-1]", "[f(g(h()))]", "[a(", "[']"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := testEnv().evalString("p", s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Path != "p" && !strings.HasPrefix(e.Path, "variables.")) {
				t.Fatalf("%q: error %T %v is not located", s, err, err)
			}
			return
		}
		if _, isExpr, _ := classify(s); !isExpr && v != strings.TrimPrefix(s, "[") && v != s {
			t.Fatalf("literal %q evaluated to %v", s, v)
		}
	})
}

func TestCatalogOfMatchesCatalog(t *testing.T) {
	b := regions.Builtin()
	c := CatalogOf(b.All())
	for _, r := range []string{"westeurope", "Brazil South", "southeastasia"} {
		want, got := b.CheckDataResidency(r, true), c.CheckDataResidency(r, true)
		if (want == nil) != (got == nil) || (want != nil && want.Error() != got.Error()) {
			t.Errorf("%s: %v, want %v", r, got, want)
		}
	}
	if _, err := c.Lookup("atlantis"); err == nil {
		t.Error("unknown region found")
	}
}
