package dpsclient

import (
	"context"
	"net/http"

	"github.com/opendps/opendps/internal/model"
)

// Types of the replication route of the region API (docs/dr-design.md,
// "Replication").
type (
	ReplStatus = model.ReplStatus
	ReplState  = model.ReplState
)

// PathRegionReplication is the replication route (internal/regionapi).
const PathRegionReplication = "/opendps/region/replication"

// Replication is the replication of the region answering.
type Replication struct {
	// Streams are its outgoing streams, one per DR-enabled instance
	// primary there (about a second old).
	Streams []ReplStatus `json:"streams"`
	// Incoming are the copies it holds as secondary.
	Incoming []ReplState `json:"incoming"`
}

// Replication reports the replication of the region answering.
func (c *Control) Replication(ctx context.Context) (*Replication, error) {
	var out Replication
	_, err := c.do(ctx, call{method: http.MethodGet, path: PathRegionReplication, out: &out})
	if out.Streams == nil {
		out.Streams = []ReplStatus{}
	}
	if out.Incoming == nil {
		out.Incoming = []ReplState{}
	}
	return &out, err
}
