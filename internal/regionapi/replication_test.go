package regionapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestReplicationRoute(t *testing.T) {
	if regionapi.PathReplication != dpsclient.PathRegionReplication {
		t.Error("the replication paths of internal/regionapi and pkg/dpsclient differ")
	}
	var fail error
	h, err := regionapi.New(regionapi.Config{Region: &fakeRegion{}, Replication: func(context.Context) (*regionapi.ReplicationList, error) {
		return &regionapi.ReplicationList{
			Streams:  []model.ReplStatus{{Instance: "a", Destination: "northeurope", AckedRev: 7, SourceRev: 9, LagMs: 12}},
			Incoming: []model.ReplState{{Instance: "b", Source: "northeurope", Rev: 3}},
		}, fail
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dpsclient.NewControl(srv.URL, "tok", srv.Client())
	rep, err := c.Replication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Streams) != 1 || rep.Streams[0].AckedRev != 7 || len(rep.Incoming) != 1 || rep.Incoming[0].Rev != 3 {
		t.Errorf("replication = %+v", rep)
	}
	fail = errors.New("etcd down")
	if _, err := c.Replication(context.Background()); err == nil {
		t.Error("a storage failure was not reported")
	}
	// Without a replication reporter, the route does not exist.
	h2, _ := regionapi.New(regionapi.Config{Region: &fakeRegion{}})
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	resp, err := http.Get(srv2.URL + regionapi.PathReplication)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without a reporter: %d, want 404", resp.StatusCode)
	}
}
