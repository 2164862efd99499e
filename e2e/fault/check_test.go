package fault

import (
	"fmt"
	"os"
	"path/filepath"
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
//   - enrollment.get, registration.get and the final serializable reads
//     of every member return the current value ("" when absent).
//
// Operations of unknown outcome get a return time of Never: they may take
// effect at any point after their call, or not at all (after everything
// else). Failed operations are left out.

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
		if in.Kind.write() {
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
func toPorcupine(ops []Op) []porcupine.Operation {
	seen := map[[2]string]time.Duration{} // key, value -> first return of a read of it
	for _, op := range ops {
		if op.Outcome == OK && !op.Kind.write() && op.Out != Absent {
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
			ClientId: op.Worker, Call: int64(op.Call), Return: int64(ret),
			Input:    pInput{Kind: op.Kind, Key: op.Key, Value: value},
			Output:   pOutput{Value: op.Out, Unknown: unknown},
			Metadata: fmt.Sprintf("op #%d via node%d: %s", op.ID, op.Node+1, op.Err),
		})
	}
	return out
}

// linearizability is the result of checking a history.
type linearizability struct {
	Keys          int
	Illegal       []string // keys whose history is not linearizable
	Inconclusive  []string // keys the checker gave up on (timeout)
	Visualization string   // HTML of the illegal keys, when any
}

// checkLinearizable checks every key's history and, when one is illegal,
// writes porcupine's visualization of the illegal keys under dir.
func checkLinearizable(ops []Op, dir func() string, name string, perKey time.Duration) (linearizability, error) {
	parts := registerModel.Partition(toPorcupine(ops))
	res := linearizability{Keys: len(parts)}
	var bad []porcupine.Operation
	for _, p := range parts {
		key := p[0].Input.(pInput).Key
		switch porcupine.CheckOperationsTimeout(registerModel, p, perKey) {
		case porcupine.Illegal:
			res.Illegal = append(res.Illegal, key)
			bad = append(bad, p...)
		case porcupine.Unknown:
			res.Inconclusive = append(res.Inconclusive, key)
		}
	}
	sort.Strings(res.Illegal)
	if len(bad) == 0 {
		return res, nil
	}
	_, info := porcupine.CheckOperationsVerbose(registerModel, bad, time.Minute)
	if err := os.MkdirAll(dir(), 0o755); err != nil {
		return res, err
	}
	res.Visualization = filepath.Join(dir(), name+".html")
	return res, porcupine.VisualizePath(registerModel, info, res.Visualization)
}
