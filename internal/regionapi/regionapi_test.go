package regionapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// fakeRegion answers with canned values and errors.
type fakeRegion struct {
	err     error
	added   region.AddRequest
	removed string
	force   bool
}

func (f *fakeRegion) Status(context.Context) (*region.Status, error) {
	return &region.Status{Region: "westeurope", Leader: "n1", Members: []region.Member{{Name: "n1"}, {Name: "n2"}}}, f.err
}

func (f *fakeRegion) Add(_ context.Context, req region.AddRequest) (*region.AddResult, error) {
	f.added = req
	return &region.AddResult{Member: region.Member{Name: req.Name}, Flags: []string{"--join"}}, f.err
}

func (f *fakeRegion) Remove(_ context.Context, name string, force bool) (*region.Member, error) {
	f.removed, f.force = name, force
	return &region.Member{Name: name}, f.err
}

func (f *fakeRegion) Promote(_ context.Context, name string) (*region.Member, error) {
	return &region.Member{Name: name}, f.err
}

func (f *fakeRegion) Snapshot(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("SNAPSHOT")), f.err
}

func TestRegionAPI(t *testing.T) {
	f := &fakeRegion{}
	h, err := regionapi.New(regionapi.Config{Region: f})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := dpsclient.NewControl(srv.URL, "tok", srv.Client())
	ctx := context.Background()

	if st, err := c.RegionStatus(ctx); err != nil || st.Leader != "n1" {
		t.Errorf("status: %+v %v", st, err)
	}
	if ms, err := c.RegionMembers(ctx); err != nil || len(ms) != 2 {
		t.Errorf("members: %+v %v", ms, err)
	}
	if r, err := c.AddMember(ctx, dpsclient.AddMemberRequest{Name: "n3", PeerURL: "http://h3:2380", Zone: "3", Learner: true}); err != nil ||
		r.Member.Name != "n3" || f.added.PeerURL != "http://h3:2380" || !f.added.Learner {
		t.Errorf("add: %+v %v, request %+v", r, err, f.added)
	}
	if _, err := c.RemoveMember(ctx, "n3", true); err != nil || f.removed != "n3" || !f.force {
		t.Errorf("remove: %v, got %q force %t", err, f.removed, f.force)
	}
	if m, err := c.PromoteMember(ctx, "n3"); err != nil || m.Name != "n3" {
		t.Errorf("promote: %+v %v", m, err)
	}
	var b strings.Builder
	if n, err := c.Snapshot(ctx, &b); err != nil || n != 8 || b.String() != "SNAPSHOT" {
		t.Errorf("snapshot: %d %q %v", n, b.String(), err)
	}

	for _, tt := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("%w: bad", region.ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("%w: etcdctl", region.ErrExternal), http.StatusBadRequest},
		{fmt.Errorf("%w: n9", region.ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("%w: n1", region.ErrExists), http.StatusConflict},
		{fmt.Errorf("%w: quorum", region.ErrRefused), http.StatusConflict},
		{errors.New("etcd down"), http.StatusServiceUnavailable},
	} {
		f.err = tt.err
		_, err := c.RemoveMember(ctx, "n1", false)
		var ce *dpsclient.ControlError
		if !errors.As(err, &ce) || ce.StatusCode != tt.status || !strings.Contains(ce.Message, strings.TrimPrefix(tt.err.Error(), "region: ")) {
			t.Errorf("error %v: got %v, want status %d with the message", tt.err, err, tt.status)
		}
	}
	f.err = nil
	resp, err := http.Post(srv.URL+regionapi.PathMembers, "application/json", strings.NewReader(`{"name": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed add body: %d, want 400", resp.StatusCode)
	}
}

func TestPathsMatchClient(t *testing.T) {
	if regionapi.PathStatus != dpsclient.PathRegion || regionapi.PathMembers != dpsclient.PathRegionMembers ||
		regionapi.PathSnapshot != dpsclient.PathRegionSnapshot {
		t.Error("the paths of internal/regionapi and pkg/dpsclient differ")
	}
}
