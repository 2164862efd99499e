package history

import (
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model: every enrollment and every device registration is a
// read/write register, keyed by its id, checked independently
// (P-compositionality).
//
//   - enrollment.put(v) writes v (the deviceId it sets); its answer must
//     echo v.
//   - register writes where the device was assigned ("hub|deviceId", or
//     "status:failed"); an unknown register may write any value.
//   - enrollment.get, registration.get and the final reads return the
//     current value ("" when absent).
//
// Operations of unknown outcome get a return time of Never: they may take
// effect at any point after their call, or not at all (after everything
// else). Failed operations are left out.

// Checked is one operation as Check sees it.
type Checked struct {
	Worker  int // client: a client's operations never overlap
	Kind    Kind
	Key     string // enrollment or device registration id
	In      string // value written
	Out     string // value read or registered
	Outcome Outcome
	Call    int64  // nanoseconds, on one clock for the whole history
	Return  int64  // nanoseconds, same clock
	Meta    string // shown with the operation in a visualization
}

type pInput struct {
	Kind  Kind
	Key   string
	Value string // written
}

type pOutput struct {
	Value   string
	Unknown bool
}

var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(pInput).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return Absent },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(pInput), output.(pOutput)
		switch in.Kind {
		case EnrollmentPut:
			return out.Unknown || out.Value == in.Value, in.Value
		case Register:
			if out.Unknown {
				return true, AnyValue
			}
			return true, out.Value
		default: // reads
			if s == AnyValue {
				return out.Value != Absent, out.Value
			}
			return out.Value == s, s
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(pInput), output.(pOutput)
		res := fmt.Sprintf("%q", out.Value)
		if out.Unknown {
			res = "unknown"
		}
		if in.Kind.Write() {
			return fmt.Sprintf("%s(%s, %q) -> %s", in.Kind, in.Key, in.Value, res)
		}
		return fmt.Sprintf("%s(%s) -> %s", in.Kind, in.Key, res)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state) },
	DescribeOperationMetadata: func(info any) string {
		if info == nil {
			return ""
		}
		return info.(string)
	},
}

// toPorcupine converts the checkable operations: everything that did not
// fail. Enrollment puts of unknown outcome are patched as etcd's
// robustness suite does: values are unique, so a put whose value no read
// returned can be placed after everything (dropped) without changing the
// verdict, and one whose value was read must have taken effect before
// the first such read returned (its return time becomes that one).
// Without this, every unknown put stays concurrent with the rest of the
// history and the search explodes.
func toPorcupine(ops []Checked) []porcupine.Operation {
	seen := map[[2]string]int64{} // key, value -> first return of a read of it
	for _, op := range ops {
		if op.Outcome == OK && !op.Kind.Write() && op.Out != Absent {
			kv := [2]string{op.Key, op.Out}
			if r, ok := seen[kv]; !ok || op.Return < r {
				seen[kv] = op.Return
			}
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Failed {
			continue
		}
		ret, unknown := op.Return, op.Outcome == Unknown
		if unknown {
			ret = Never
			if op.Kind == EnrollmentPut {
				r, ok := seen[[2]string{op.Key, op.In}]
				if !ok {
					continue
				}
				ret = max(r, op.Call)
			}
		}
		value := op.In
		if op.Kind == Register {
			value = ""
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Worker, Call: op.Call, Return: ret,
			Input:    pInput{Kind: op.Kind, Key: op.Key, Value: value},
			Output:   pOutput{Value: op.Out, Unknown: unknown},
			Metadata: op.Meta,
		})
	}
	return out
}

// Result is the verdict of Check.
type Result struct {
	Keys         int      // keys checked
	Illegal      []string // keys whose history is not linearizable, sorted
	Inconclusive []string // keys the checker gave up on (timeout)

	illegal []porcupine.Operation // the illegal keys' operations
}

// Check checks every key's history against the model, giving up on a key
// after perKey.
func Check(ops []Checked, perKey time.Duration) Result {
	parts := registerModel.Partition(toPorcupine(ops))
	res := Result{Keys: len(parts)}
	for _, p := range parts {
		key := p[0].Input.(pInput).Key
		switch porcupine.CheckOperationsTimeout(registerModel, p, perKey) {
		case porcupine.Illegal:
			res.Illegal = append(res.Illegal, key)
			res.illegal = append(res.illegal, p...)
		case porcupine.Unknown:
			res.Inconclusive = append(res.Inconclusive, key)
		}
	}
	sort.Strings(res.Illegal)
	return res
}

// Visualize writes porcupine's HTML visualization of the illegal keys'
// histories to path (checked again, for at most a minute).
func (r Result) Visualize(path string) error {
	_, info := porcupine.CheckOperationsVerbose(registerModel, r.illegal, time.Minute)
	return porcupine.VisualizePath(registerModel, info, path)
}
