package replicate

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Regions of the tests: A is primary of the instances, B their secondary,
// C a third region of the same deployment.
const (
	regA = "westeurope"
	regB = "northeurope"
	regC = "francecentral"
)

// region is one region of a test: a store, a sink on an httptest TLS
// server with its region certificate, and a client of the others.
type region struct {
	name    string
	st      *store.Store
	srv     *httptest.Server
	sink    *Sink
	peer    *peer.Client
	cfg     peer.Config
	demoter *fakeDemoter
	down    atomic.Bool // the sink drops every connection (the region is unreachable)
}

// newRegions starts one region per name, all from one CA and each knowing
// the others.
func newRegions(t *testing.T, names ...string) map[string]*region {
	t.Helper()
	ca, err := pki.NewCA("test regions")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*region{}
	for _, n := range names {
		cert, err := ca.IssueRegion(peer.RegionURI(n), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		r := &region{name: n, cfg: peer.Config{Region: n, Certificate: cert, Roots: ca.CertPool()}}
		r.st = storetest.New(t, n)
		r.demoter = &fakeDemoter{st: r.st}
		if r.sink, err = NewSink(SinkConfig{Store: r.st, Region: n, Demoter: r.demoter, Log: testLog(t).With("sink", n)}); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		r.sink.Mount(mux)
		r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if r.down.Load() {
				panic(http.ErrAbortHandler) // drops the connection
			}
			mux.ServeHTTP(w, req)
		}))
		r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		r.srv.TLS = r.cfg.ServerTLS()
		r.srv.StartTLS()
		t.Cleanup(r.srv.Close)
		out[n] = r
	}
	for _, r := range out {
		r.cfg.Peers = map[string]string{}
		for _, o := range out {
			if o != r {
				r.cfg.Peers[o.name] = o.srv.URL
			}
		}
		if r.peer, err = peer.NewClient(r.cfg); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// source starts the replicator of r, stopped when the test ends.
func (r *region) source(t *testing.T, tune func(*Source)) *Source {
	t.Helper()
	s, err := NewSource(Config{Store: r.st, Peer: r.peer, Demoter: r.demoter, Name: r.name + "-node",
		SessionTTL: 2, Log: testLog(t).With("region", r.name)})
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(s)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// fakeDemoter records demotions and sets the entry to newDir as secondary.
type fakeDemoter struct {
	st    *store.Store
	mu    sync.Mutex
	calls []demotion
}

type demotion struct {
	instance string
	dir      model.DirEntry
	acked    int64
}

func (f *fakeDemoter) Demote(ctx context.Context, instance string, newDir model.DirEntry, ackedRev int64) error {
	f.mu.Lock()
	f.calls = append(f.calls, demotion{instance, newDir, ackedRev})
	f.mu.Unlock()
	newDir.Role = model.RoleSecondary
	return putJSON(ctx, f.st, store.DirKey(instance), newDir)
}

func (f *fakeDemoter) demotions() []demotion {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]demotion(nil), f.calls...)
}

func putJSON(ctx context.Context, st *store.Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = st.Client().Put(ctx, key, string(b))
	return err
}

// createInstance creates an instance primary in region a.
func createInstance(t *testing.T, st *store.Store, name, primary, secondary string, dr bool) model.DirEntry {
	t.Helper()
	scope := fmt.Sprintf("0ne%08x", crc32.ChecksumIEEE([]byte(name)))
	d := model.DirEntry{Name: name, IDScope: scope, Primary: primary, Secondary: secondary, Epoch: 1, DREnabled: dr, Role: model.RolePrimary}
	if !dr {
		d.Secondary = ""
	}
	if err := st.CreateInstance(context.Background(), d, &model.Instance{Name: name, IDScope: scope, Location: primary}); err != nil {
		t.Fatal(err)
	}
	return d
}

// write puts n enrollments id-{from..from+n} into instance.
func write(t testing.TB, st *store.Store, instance string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		err := st.Update(context.Background(), instance, func(tx *store.Tx) error {
			return tx.Put(store.Key(instance, store.KindEnrollment, fmt.Sprintf("id-%05d", i)), map[string]any{"id": i, "at": time.Now()})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// snapshot is every key and value of an instance in a region: its prefix,
// its ID-scope key, and its directory entry (without the role).
func snapshot(t testing.TB, st *store.Store, instance string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	resp, err := st.Client().Get(ctx, store.InstancePrefix(instance), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	var d model.DirEntry
	if ok, err := st.Get(ctx, store.DirKey(instance), &d); err != nil {
		t.Fatal(err)
	} else if ok {
		d.Role = ""
		out["dir"] = fmt.Sprintf("%+v", d)
		sr, err := st.Client().Get(ctx, store.ScopeKey(d.IDScope))
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range sr.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
	}
	return out
}

func diff(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "only at the source: "+k)
		} else if v != w {
			out = append(out, "differs: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "only at the destination: "+k)
		}
	}
	sort.Strings(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("... %d more", len(out)-5))
	}
	return strings.Join(out, "; ")
}

// waitEqual waits until the destination holds exactly the source's copy
// of instance and the destination's ReplState is streaming.
func waitEqual(t testing.TB, src, dst *store.Store, instance string) model.ReplState {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		a, b := snapshot(t, src, instance), snapshot(t, dst, instance)
		d := diff(a, b)
		var st model.ReplState
		ok, err := dst.Get(context.Background(), store.ReplStateKey(instance), &st)
		if err != nil {
			t.Fatal(err)
		}
		if d == "" && ok && st.Phase == model.ReplStreaming {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("destination of %s not equal to the source: %s (state %+v)", instance, d, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLog sends logs to t.Log when OPENDPS_TEST_LOG is set.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("OPENDPS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
