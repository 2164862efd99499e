package dr

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The model of e2e/fault: every enrollment and every device registration
// is a read/write register keyed by its id, checked independently.
//
//   - enrollment.put(v) writes v; its answer must echo v.
//   - register writes "hub|deviceId" (or "status:failed"); an unknown
//     register may write any value.
//   - enrollment.get, registration.get and the final reads of the new
//     primary's etcd return the current value ("" when absent).
//
// Operations of unknown outcome may take effect at any point after their
// call, or not at all; failed operations are left out.

type pInput struct {
	Kind  Kind
	Key   string
	Value string
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
}

const never = int64(math.MaxInt64 / 2)

// toPorcupine converts the checkable operations (as e2e/fault does: an
// unknown put whose value no read returned is dropped, one whose value was
// read took effect before the first such read returned).
func toPorcupine(ops []Op, base time.Time) []porcupine.Operation {
	at := func(t time.Time) int64 { return int64(t.Sub(base)) }
	seen := map[[2]string]int64{}
	for _, op := range ops {
		if op.Outcome == OK && !op.Kind.write() && op.Out != Absent {
			kv := [2]string{op.Key, op.Out}
			if r, ok := seen[kv]; !ok || at(op.Return) < r {
				seen[kv] = at(op.Return)
			}
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Failed {
			continue
		}
		ret, unknown := at(op.Return), op.Outcome == Unknown
		if unknown {
			ret = never
			if op.Kind == EnrollmentPut {
				r, ok := seen[[2]string{op.Key, op.In}]
				if !ok {
					continue
				}
				ret = max(r, at(op.Call))
			}
		}
		value := op.In
		if op.Kind == Register {
			value = ""
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Worker, Call: at(op.Call), Return: ret,
			Input:  pInput{Kind: op.Kind, Key: op.Key, Value: value},
			Output: pOutput{Value: op.Out, Unknown: unknown},
		})
	}
	return out
}

// finalReads turns a region's state into one read per key of ops, at the
// time it was read.
func finalReads(ops []Op, st regionState) []Op {
	keys := map[string]Kind{}
	for _, op := range ops {
		switch op.Kind {
		case EnrollmentPut, EnrollmentGet:
			keys[op.Key] = EnrollmentGet
		case Register, RegistrationGet:
			keys[op.Key] = RegistrationGet
		}
	}
	var out []Op
	for k, kind := range keys {
		v := st.registrations[k]
		if kind == EnrollmentGet {
			v = st.enrollments[k]
		}
		out = append(out, Op{Worker: 1 << 20, Kind: FinalRead, Key: k, Out: v, Outcome: OK, Call: st.at, Return: st.at})
	}
	return out
}

// checkLinearizable checks every key's history; it returns the keys whose
// history is not linearizable and those the checker gave up on.
func checkLinearizable(ops []Op, perKey time.Duration) (keys int, illegal, inconclusive []string) {
	if len(ops) == 0 {
		return 0, nil, nil
	}
	base := ops[0].Call
	for _, op := range ops {
		if op.Call.Before(base) {
			base = op.Call
		}
	}
	parts := registerModel.Partition(toPorcupine(ops, base))
	for _, p := range parts {
		key := p[0].Input.(pInput).Key
		switch porcupine.CheckOperationsTimeout(registerModel, p, perKey) {
		case porcupine.Illegal:
			illegal = append(illegal, key)
		case porcupine.Unknown:
			inconclusive = append(inconclusive, key)
		}
	}
	sort.Strings(illegal)
	return len(parts), illegal, inconclusive
}
