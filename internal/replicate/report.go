package replicate

import (
	"context"
	"encoding/json"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Report reads the region's replication records: the status of every
// outgoing stream (model.ReplStatus, stored about once a second by the
// replicator) and the state of every copy this region receives
// (model.ReplState), each in instance order.
func Report(ctx context.Context, st *store.Store) ([]model.ReplStatus, []model.ReplState, error) {
	streams := []model.ReplStatus{}
	if err := st.Each(ctx, store.ReplStatusPrefix(), func(b []byte) error {
		var v model.ReplStatus
		err := json.Unmarshal(b, &v)
		streams = append(streams, v)
		return err
	}); err != nil {
		return nil, nil, err
	}
	incoming := []model.ReplState{}
	if err := st.Each(ctx, store.ReplStatePrefix(), func(b []byte) error {
		var v model.ReplState
		err := json.Unmarshal(b, &v)
		incoming = append(incoming, v)
		return err
	}); err != nil {
		return nil, nil, err
	}
	return streams, incoming, nil
}
