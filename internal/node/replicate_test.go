package node

import (
	"context"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestReplicationAcrossRegions starts two single-node regions linked by
// the peer link: an instance created in westeurope is replicated to
// northeurope as a secondary copy by the node's replicator, and both
// regions report it on GET /opendps/region/replication.
func TestReplicationAcrossRegions(t *testing.T) {
	l := startLinkedRegions(t, nil)
	b, ctlA, ctlB := l.b, l.ctlA, l.ctlB
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := ctlA.CreateInstance(ctx, "repl-e2e", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the secondary copy in northeurope", func() bool {
		d, err := b.store.Dir(ctx, "repl-e2e")
		return err == nil && d.Role == model.RoleSecondary && d.Primary == "westeurope"
	})
	waitFor(t, "replication reported by both regions", func() bool {
		ra, errA := ctlA.Replication(ctx)
		rb, errB := ctlB.Replication(ctx)
		if errA != nil || errB != nil {
			return false
		}
		out := false
		for _, s := range ra.Streams {
			out = out || (s.Instance == "repl-e2e" && s.Destination == "northeurope" && s.Connected && s.AckedRev > 0)
		}
		in := false
		for _, s := range rb.Incoming {
			in = in || (s.Instance == "repl-e2e" && s.Source == "westeurope" && s.Phase == model.ReplStreaming)
		}
		return out && in
	})
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
