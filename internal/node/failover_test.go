package node

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestFailoverAcrossRegions starts two single-node regions linked by the
// peer link and fails an instance over through northeurope's control API:
// the node fences westeurope over the peer link (its fence endpoint is
// mounted there) and promotes itself. The replicated copy is written
// directly (the replicator is tested in internal/replicate).
func TestFailoverAcrossRegions(t *testing.T) {
	l := startLinkedRegions(t, func(c *Config) { c.DRStartGrace = time.Millisecond })
	a, b, ctlA, ctlB := l.a, l.b, l.ctlA, l.ctlB
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := ctlA.CreateInstance(ctx, "fo-e2e", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	d, err := a.store.Dir(ctx, "fo-e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Dir(ctx, "fo-e2e"); errors.Is(err, store.ErrNotFound) {
		sd := *d
		sd.Role = model.RoleSecondary
		in, _ := a.store.Instance(ctx, "fo-e2e")
		if err := b.store.CreateInstance(ctx, sd, in); err != nil {
			t.Fatal(err)
		}
		rs := model.ReplState{Instance: "fo-e2e", Source: "westeurope", Epoch: 1, Phase: model.ReplStreaming, Rev: 1, SourceTime: time.Now()}
		if err := b.store.Put(ctx, store.ReplStateKey("fo-e2e"), mustJSONString(t, rs)); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := ctlB.Failover(ctx, dpsclient.FailoverRequest{From: "westeurope", Instances: []string{"fo-e2e"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Items) != 1 || rep.Items[0].Status != model.FailoverPromoted || rep.Items[0].Epoch != 2 || !rep.Items[0].OldPrimaryFenced {
		t.Fatalf("report = %+v, want promoted at epoch 2 with the old primary fenced over the peer link", rep.Items)
	}
	if d, _ := a.store.Dir(ctx, "fo-e2e"); d == nil || d.Role != model.RoleFenced {
		t.Errorf("westeurope's entry = %+v, want fenced", d)
	}
	if d, _ := b.store.Dir(ctx, "fo-e2e"); d == nil || d.Role != model.RolePrimary || d.Primary != "northeurope" {
		t.Errorf("northeurope's entry = %+v, want primary", d)
	}
	// The old region demotes itself (the replicator calls this) and lists
	// the report on its control API.
	nd, _ := b.store.Dir(ctx, "fo-e2e")
	if err := a.Failover().Demote(ctx, "fo-e2e", *nd, 0); err != nil {
		t.Fatal(err)
	}
	reps, err := ctlA.LostWrites(ctx, "fo-e2e")
	if err != nil || len(reps) != 1 || reps[0].NewEpoch != 2 || reps[0].NewPrimary != "northeurope" {
		t.Errorf("lost writes = %+v %v", reps, err)
	}
}

func mustJSONString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
