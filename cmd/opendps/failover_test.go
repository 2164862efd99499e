package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// noRegion is a region API backend the failover commands do not use.
type noRegion struct{}

func (noRegion) Status(context.Context) (*region.Status, error) { return &region.Status{}, nil }
func (noRegion) Add(context.Context, region.AddRequest) (*region.AddResult, error) {
	return nil, region.ErrRefused
}
func (noRegion) Remove(context.Context, string, bool) (*region.Member, error) {
	return nil, region.ErrRefused
}
func (noRegion) Promote(context.Context, string) (*region.Member, error) {
	return nil, region.ErrRefused
}
func (noRegion) Snapshot(context.Context) (io.ReadCloser, error) { return nil, region.ErrRefused }

// recordingDR stands for one region's failover manager.
type recordingDR struct {
	region   string
	fences   []model.FenceRequest
	failover []model.FailoverRequest
	deleted  []string // instance/epoch of DeleteLostWrites
}

func (d *recordingDR) Failover(_ context.Context, req model.FailoverRequest) (*model.FailoverReport, error) {
	d.failover = append(d.failover, req)
	return &model.FailoverReport{Region: req.From, To: d.region, Planned: req.Planned, Items: []model.FailoverItem{{
		Instance: "default", From: "westeurope", To: d.region, Epoch: 2, Status: model.FailoverPromoted,
		LastReplicatedRev: 4242, LastReplicatedTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), OldPrimaryFenced: req.FencedDirectly}}}, nil
}

func (d *recordingDR) Fence(_ context.Context, req model.FenceRequest) (*model.FenceResult, error) {
	d.fences = append(d.fences, req)
	return &model.FenceResult{Region: d.region, Items: []model.FenceItem{{Instance: "default", Status: model.FenceFenced, SourceRev: 9}}}, nil
}

func (d *recordingDR) LostWrites(context.Context, string) ([]model.LostWrites, error) {
	return []model.LostWrites{{Instance: "default", Region: d.region, OldEpoch: 1, NewEpoch: 2, NewPrimary: "northeurope",
		AckedRev: 40, Complete: true, Writes: []model.LostWrite{{Key: "/opendps/i/default/enr/dev-9", Rev: 41}, {Key: "/opendps/i/default/enr/dev-1", Rev: 42, Deleted: true}}}}, nil
}

func (d *recordingDR) DeleteLostWrites(_ context.Context, instance string, epoch uint64) error {
	d.deleted = append(d.deleted, fmt.Sprintf("%s/%d", instance, epoch))
	return nil
}

// TestFailoverCLI: `region failover` fences the lost region through its
// own control API, then asks its pair to promote, and prints the report;
// `region lost-writes` reads and deletes the old region's reports; `region
// fence` fences the region it names.
func TestFailoverCLI(t *testing.T) {
	drs := map[string]*recordingDR{}
	conn := dpsclient.Connection{OperatorToken: "tok"}
	for _, r := range [][2]string{{"westeurope", "northeurope"}, {"northeurope", "westeurope"}} {
		d := &recordingDR{region: r[0]}
		drs[r[0]] = d
		h, err := regionapi.New(regionapi.Config{Region: noRegion{}, DR: d})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		conn.Regions = append(conn.Regions, dpsclient.RegionInfo{Name: r[0], Pair: r[1], ControlURLs: []string{srv.URL}})
	}
	conn.ControlEndpoint = conn.Regions[0].ControlURLs[0]
	file := filepath.Join(t.TempDir(), "connection.json")
	b, _ := json.Marshal(conn)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g := []string{"--connection", file}

	out := mustRun(t, g, "region", "failover", "--region", "westeurope")
	we, ne := drs["westeurope"], drs["northeurope"]
	if len(we.fences) != 1 || we.fences[0].Primary != "westeurope" || we.fences[0].NewPrimary != "northeurope" {
		t.Errorf("fences of westeurope = %+v, want one for northeurope", we.fences)
	}
	if len(ne.failover) != 1 || ne.failover[0].From != "westeurope" || !ne.failover[0].FencedDirectly || ne.failover[0].Planned {
		t.Errorf("failovers asked of northeurope = %+v", ne.failover)
	}
	for _, want := range []string{"unplanned failover from westeurope to northeurope", "MAY HAVE LOST WRITES AFTER", "default", "promoted", "4242", "2026-01-02T03:04:05Z", "yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("failover output lacks %q:\n%s", want, out)
		}
	}
	// Planned: no direct fence (the secondary fences over the peer link).
	var rep dpsclient.FailoverReport
	out = mustRun(t, g, "region", "failover", "--region", "westeurope", "--planned", "--instance", "default", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.Planned || len(rep.Items) != 1 {
		t.Errorf("planned --json: %v\n%s", err, out)
	}
	if len(we.fences) != 1 || !ne.failover[1].Planned || ne.failover[1].Instances[0] != "default" {
		t.Errorf("planned: fences %+v, failovers %+v", we.fences, ne.failover)
	}
	// instance failover goes to the pair of the instance's region.
	conn.Instances = []dpsclient.InstanceInfo{{Name: "default", Region: "westeurope"}}
	b, _ = json.Marshal(conn)
	os.WriteFile(file, b, 0o600)
	mustRun(t, g, "instance", "failover", "default")
	if len(ne.failover) != 3 || !ne.failover[2].Planned || ne.failover[2].Instances[0] != "default" {
		t.Errorf("instance failover: %+v", ne.failover)
	}
	out = mustRun(t, g, "region", "lost-writes", "--region", "westeurope")
	for _, want := range []string{"instance default: demoted in westeurope from epoch 1 to 2", "2 write(s) after revision 40", "delete", "/opendps/i/default/enr/dev-9"} {
		if !strings.Contains(out, want) {
			t.Errorf("lost-writes output lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, g, "region", "lost-writes", "delete", "default", "2", "--region", "westeurope"); !strings.Contains(out, "deleted") {
		t.Errorf("lost-writes delete: %s", out)
	}
	if !slices.Equal(we.deleted, []string{"default/2"}) || len(ne.deleted) != 0 {
		t.Errorf("lost-writes delete reached westeurope with %q, northeurope with %q; want default/2 at westeurope only", we.deleted, ne.deleted)
	}
	// region fence goes to the region it fences.
	out = mustRun(t, g, "region", "fence", "--region", "westeurope", "--instance", "default", "--new-primary", "northeurope")
	if len(we.fences) != 2 || we.fences[1].Primary != "westeurope" || we.fences[1].NewPrimary != "northeurope" ||
		!slices.Equal(we.fences[1].Instances, []string{"default"}) || we.fences[1].Undo || len(ne.fences) != 0 {
		t.Errorf("region fence: westeurope got %+v, northeurope %+v", we.fences, ne.fences)
	}
	if !strings.Contains(out, "fenced") {
		t.Errorf("region fence output:\n%s", out)
	}
}
