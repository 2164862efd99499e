package fault

import (
	"os"
	"path/filepath"
	"time"

	"github.com/opendps/opendps/dpstest/history"
)

// linearizability is the result of checking a history.
type linearizability struct {
	history.Result
	Visualization string // HTML of the illegal keys, when any
}

// checkLinearizable checks every key's history against the model of
// dpstest/history (final reads of every member included) and, when one
// is illegal, writes porcupine's visualization of the illegal keys under
// dir.
func checkLinearizable(ops []Op, dir func() string, name string, perKey time.Duration) (linearizability, error) {
	checked := make([]history.Checked, 0, len(ops))
	for _, op := range ops {
		checked = append(checked, op.checked())
	}
	res := linearizability{Result: history.Check(checked, perKey)}
	if len(res.Illegal) == 0 {
		return res, nil
	}
	if err := os.MkdirAll(dir(), 0o755); err != nil {
		return res, err
	}
	res.Visualization = filepath.Join(dir(), name+".html")
	return res, res.Visualize(res.Visualization)
}
