package regionapi

import (
	"context"
	"net/http"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
)

// Replication route (docs/dr-design.md, "Replication"):
//
//	GET /opendps/region/replication   ReplicationList: the streams of this region's
//	                                  replicator (ReplStatus, about a second old) and
//	                                  the copies this region receives (ReplState)
const PathReplication = "/opendps/region/replication"

// ReplicationFunc reports the region's replication (replicate.Report).
type ReplicationFunc func(ctx context.Context) (*ReplicationList, error)

// ReplicationList is the answer of GET PathReplication.
type ReplicationList struct {
	// Streams are the outgoing streams, one per DR-enabled instance
	// primary here.
	Streams []model.ReplStatus `json:"streams"`
	// Incoming are the copies this region holds as secondary.
	Incoming []model.ReplState `json:"incoming"`
}

func (h *handler) mountReplication(handle func(string, apierr.HandlerFunc), f ReplicationFunc) {
	handle("GET "+PathReplication, func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := h.ctx(r)
		defer cancel()
		l, err := f(ctx)
		if err != nil {
			return toAPI(err)
		}
		return apierr.JSON(w, http.StatusOK, l)
	})
}
