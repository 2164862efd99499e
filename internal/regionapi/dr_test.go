package regionapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// fakeDR records requests and answers with canned values and errors.
type fakeDR struct {
	err      error
	failover model.FailoverRequest
	fence    model.FenceRequest
	instance string
	deleted  string
}

func (f *fakeDR) Failover(_ context.Context, req model.FailoverRequest) (*model.FailoverReport, error) {
	f.failover = req
	rep := &model.FailoverReport{Region: req.From, To: "northeurope", Planned: req.Planned}
	for _, i := range req.Instances {
		rep.Items = append(rep.Items, model.FailoverItem{Instance: i, Status: model.FailoverPromoted, Epoch: 2})
	}
	return rep, f.err
}

func (f *fakeDR) Fence(_ context.Context, req model.FenceRequest) (*model.FenceResult, error) {
	f.fence = req
	return &model.FenceResult{Region: "westeurope", Items: []model.FenceItem{{Instance: "a", Status: model.FenceFenced, SourceRev: 42}}}, f.err
}

func (f *fakeDR) LostWrites(_ context.Context, instance string) ([]model.LostWrites, error) {
	f.instance = instance
	return []model.LostWrites{{Instance: "a", NewEpoch: 2, Writes: []model.LostWrite{{Key: "k", Rev: 7}}}}, f.err
}

func (f *fakeDR) DeleteLostWrites(_ context.Context, instance string, epoch uint64) error {
	f.deleted = fmt.Sprintf("%s/%d", instance, epoch)
	return f.err
}

func drServer(t *testing.T) (*fakeDR, *dpsclient.Control, string) {
	t.Helper()
	f := &fakeDR{}
	h, err := regionapi.New(regionapi.Config{Region: &fakeRegion{}, DR: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return f, dpsclient.NewControl(srv.URL, "tok", srv.Client()), srv.URL
}

func TestFailoverAPI(t *testing.T) {
	f, c, _ := drServer(t)
	ctx := context.Background()
	req := model.FailoverRequest{From: "westeurope", Instances: []string{"a"}, Force: true, FencedDirectly: true}
	rep, err := c.Failover(ctx, req)
	if err != nil || len(rep.Items) != 1 || rep.Items[0].Status != model.FailoverPromoted {
		t.Fatalf("failover: %+v %v", rep, err)
	}
	if f.failover.From != "westeurope" || !f.failover.Force || !f.failover.FencedDirectly || f.failover.Planned {
		t.Errorf("manager got %+v", f.failover)
	}
	// An instance failover is planned unless the body says otherwise.
	if _, err := c.InstanceFailover(ctx, "b", true, false); err != nil || !f.failover.Planned || f.failover.Instances[0] != "b" || f.failover.From != "" {
		t.Errorf("instance failover: %+v %v", f.failover, err)
	}
	if _, err := c.InstanceFailover(ctx, "b", false, true); err != nil || f.failover.Planned || !f.failover.Force {
		t.Errorf("unplanned instance failover: %+v %v", f.failover, err)
	}
	f.err = fmt.Errorf("%w: a: the base copy is under way", dr.ErrRefused)
	_, err = c.Failover(ctx, req)
	var ce *dpsclient.ControlError
	if !errors.As(err, &ce) || ce.StatusCode != http.StatusConflict || !strings.Contains(ce.Message, "base copy") {
		t.Errorf("refused failover: %v, want 409 with the reason", err)
	}
	f.err = fmt.Errorf("%w: %w", dr.ErrRefused, dr.ErrResidency)
	if _, err = c.InstanceFailover(ctx, "canary", true, false); !errors.As(err, &ce) || ce.StatusCode != http.StatusConflict ||
		!strings.Contains(ce.Message, "data residency: disaster recovery is disabled for this instance") {
		t.Errorf("residency failover: %v, want 409 with the residency reason", err)
	}
	if _, err := c.Failover(ctx, model.FailoverRequest{}); !errors.As(err, &ce) || ce.StatusCode != http.StatusBadRequest {
		t.Errorf("failover without region: %v, want 400", err)
	}
}

func TestFenceAndLostWritesAPI(t *testing.T) {
	f, c, _ := drServer(t)
	ctx := context.Background()
	res, err := c.Fence(ctx, model.FenceRequest{Primary: "westeurope", NewPrimary: "northeurope"})
	if err != nil || res.Items[0].SourceRev != 42 || f.fence.NewPrimary != "northeurope" {
		t.Errorf("fence: %+v %v (manager got %+v)", res, err, f.fence)
	}
	reps, err := c.LostWrites(ctx, "a")
	if err != nil || len(reps) != 1 || reps[0].Writes[0].Rev != 7 || f.instance != "a" {
		t.Errorf("lost writes: %+v %v (instance %q)", reps, err, f.instance)
	}
	if err := c.DeleteLostWrites(ctx, "a", 2); err != nil || f.deleted != "a/2" {
		t.Errorf("delete: %v (deleted %q)", err, f.deleted)
	}
	f.err = fmt.Errorf("%w: no report", dr.ErrNotFound)
	var ce *dpsclient.ControlError
	if err := c.DeleteLostWrites(ctx, "a", 3); !errors.As(err, &ce) || ce.StatusCode != http.StatusNotFound {
		t.Errorf("delete of a missing report: %v, want 404", err)
	}
}

func TestFailoverRoutesWithoutDR(t *testing.T) {
	h, _ := regionapi.New(regionapi.Config{Region: &fakeRegion{}})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+regionapi.PathFailover, "application/json", strings.NewReader(`{"region":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("failover without DR: %d, want 404", resp.StatusCode)
	}
}

func TestFailoverPathsMatchClient(t *testing.T) {
	if regionapi.PathFailover != dpsclient.PathRegionFailover || regionapi.PathFence != dpsclient.PathRegionFence ||
		regionapi.PathInstances != dpsclient.PathRegionInstances || regionapi.PathLostWrites != dpsclient.PathRegionLostWrites {
		t.Error("the failover paths of regionapi and dpsclient differ")
	}
}
