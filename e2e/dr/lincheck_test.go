package dr

import (
	"time"

	"github.com/opendps/opendps/dpstest/history"
)

// The model is e2e/fault's, in dpstest/history: every enrollment and
// every device registration is a read/write register keyed by its id,
// checked independently; here the final reads are of the new primary's
// etcd.

// finalReads turns a region's state into one read per key of ops, at the
// time it was read.
func finalReads(ops []Op, st regionState) []Op {
	keys := map[string]history.Kind{}
	for _, op := range ops {
		switch op.Kind {
		case history.EnrollmentPut, history.EnrollmentGet:
			keys[op.Key] = history.EnrollmentGet
		case history.Register, history.RegistrationGet:
			keys[op.Key] = history.RegistrationGet
		}
	}
	var out []Op
	for k, kind := range keys {
		v := st.registrations[k]
		if kind == history.EnrollmentGet {
			v = st.enrollments[k]
		}
		out = append(out, Op{Worker: 1 << 20, Kind: history.FinalRead, Key: k, Out: v, Outcome: history.OK, Call: st.at, Return: st.at})
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
	at := func(t time.Time) int64 { return int64(t.Sub(base)) }
	checked := make([]history.Checked, 0, len(ops))
	for _, op := range ops {
		checked = append(checked, history.Checked{Worker: op.Worker, Kind: op.Kind, Key: op.Key, In: op.In, Out: op.Out,
			Outcome: op.Outcome, Call: at(op.Call), Return: at(op.Return)})
	}
	res := history.Check(checked, perKey)
	return res.Keys, res.Illegal, res.Inconclusive
}
