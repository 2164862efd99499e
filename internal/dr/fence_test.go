package dr

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// TestFence: a fence stops writes at the same epoch and reports its
// revision; it is idempotent; Undo lifts it.
func TestFence(t *testing.T) {
	const name = "india"
	wr, _ := createDR(t, name)
	ctx := ctxT(t)
	m := m2(t, wr)
	if _, err := write(ctx, wr, name, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := remove(ctx, wr, name, "gone"); err != nil {
		t.Fatal(err)
	}
	delRev := headRev(t, wr) // a trailing delete: the last change of the prefix
	res, err := m.Fence(ctx, FenceRequest{Instances: []string{name}, NewPrimary: ne})
	if err != nil {
		t.Fatal(err)
	}
	rev, _, _ := wr.st.GetRev(ctx, store.DirKey(name), nil, false)
	if len(res.Items) != 1 || res.Items[0].Status != model.FenceFenced || res.Items[0].SourceRev != rev || res.Items[0].Epoch != 1 {
		t.Errorf("fence = %+v, want fenced at the entry's revision %d", res, rev)
	}
	if res.Items[0].DataRev != delRev {
		t.Errorf("data rev = %d, want the trailing delete's %d", res.Items[0].DataRev, delRev)
	}
	_, err = write(ctx, wr, name, "x")
	wantFenced(t, err, "write after a fence")
	again, err := m.Fence(ctx, FenceRequest{Instances: []string{name}})
	if err != nil || again.Items[0].SourceRev != rev || again.Items[0].DataRev != delRev || again.Items[0].Status != model.FenceFenced {
		t.Errorf("second fence = %+v %v, want the same revision", again, err)
	}
	if _, err := m.Fence(ctx, FenceRequest{Instances: []string{name}, NewPrimary: "brazilsouth"}); err == nil {
		t.Error("a fence for another new primary than the secondary was accepted")
	}
	if _, err := m.Fence(ctx, FenceRequest{Primary: ne}); err == nil {
		t.Error("a fence for another region was accepted")
	}
	if _, err := m.Fence(ctx, FenceRequest{Instances: []string{name}, Undo: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := write(ctx, wr, name, "y"); err != nil {
		t.Errorf("write after the fence was lifted: %v", err)
	}
}

// TestFenceHandlerOnlySecondary: over the peer link only the instance's
// secondary region may fence it; a call without a region is forbidden.
func TestFenceHandlerOnlySecondary(t *testing.T) {
	const name = "juliet"
	wr, _ := createDR(t, name)
	m := m2(t, wr)
	call := func(caller string) (int, model.FenceResult) {
		h := m.FenceHandler(func(*http.Request) string { return caller })
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", PathPeerFence, strings.NewReader(`{"instances":["`+name+`"]}`))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		var res model.FenceResult
		json.Unmarshal(rec.Body.Bytes(), &res)
		return rec.Code, res
	}
	if code, _ := call(""); code != http.StatusForbidden {
		t.Errorf("no region: %d, want 403", code)
	}
	if code, _ := call("brazilsouth"); code != http.StatusConflict {
		t.Errorf("another region: %d, want 409", code)
	}
	if d := dirOf(t, wr, name); d.Role != model.RolePrimary {
		t.Errorf("fenced by another region: %+v", d)
	}
	code, res := call(ne)
	if code != http.StatusOK || len(res.Items) != 1 || res.Items[0].Status != model.FenceFenced {
		t.Errorf("the secondary: %d %+v, want fenced", code, res)
	}
}
