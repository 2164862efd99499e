package dr

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Two regions, each a real embedded etcd, linked by a real mutual-TLS
// peer link serving the fence endpoint; shared by the tests of the
// package (each uses its own instance names) and stopped by TestMain.
const (
	we = "westeurope"  // the primary of the tests' instances
	ne = "northeurope" // their secondary
)

type testRegion struct {
	name string
	st   *store.Store
	peer *peer.Client // of the other region
	dir  string
	srv  *http.Server
}

var (
	pairOnce sync.Once
	pairErr  error
	regionsT map[string]*testRegion
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, r := range regionsT {
		if r.srv != nil {
			r.srv.Close()
		}
		if r.st != nil {
			r.st.Close()
		}
		os.RemoveAll(r.dir)
	}
	os.Exit(code)
}

// pair returns the two regions, started on first use.
func pair(t testing.TB) (*testRegion, *testRegion) {
	t.Helper()
	pairOnce.Do(func() { pairErr = startPair() })
	if pairErr != nil {
		t.Fatalf("start regions: %v", pairErr)
	}
	return regionsT[we], regionsT[ne]
}

func startPair() error {
	ca, err := pki.NewCA("dr-test")
	if err != nil {
		return err
	}
	regionsT = map[string]*testRegion{}
	cfgs := map[string]peer.Config{}
	urls := map[string]string{}
	for _, name := range []string{we, ne} {
		r := &testRegion{name: name}
		regionsT[name] = r
		if r.st, r.dir, err = openStore(name); err != nil {
			return err
		}
		cert, err := ca.IssueRegion(peer.RegionURI(name), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			return err
		}
		cfgs[name] = peer.Config{Region: name, Certificate: cert, Roots: ca.CertPool()}
		fm, err := New(Config{Store: r.st, Region: name})
		if err != nil {
			return err
		}
		c := cfgs[name]
		if urls[name], r.srv, err = servePeer(&c, fm); err != nil {
			return err
		}
	}
	for _, name := range []string{we, ne} {
		other := we
		if name == we {
			other = ne
		}
		c := cfgs[name]
		c.Peers = map[string]string{other: urls[other]}
		if regionsT[name].peer, err = peer.NewClient(c); err != nil {
			return err
		}
	}
	return nil
}

func openStore(region string) (*store.Store, string, error) {
	dir, err := os.MkdirTemp("", "drtest-")
	if err != nil {
		return nil, "", err
	}
	c, _ := netutil.FreeLoopbackAddr()
	p, _ := netutil.FreeLoopbackAddr()
	st, err := store.Open(context.Background(), store.Config{DataDir: dir, Name: "t1", Region: region,
		ClientURL: "http://" + c, PeerURL: "http://" + p})
	return st, dir, err
}

func servePeer(cfg *peer.Config, m *Manager) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+PathPeerFence, m.FenceHandler(nil))
	// A stand-in for internal/forward's locate endpoint (mounted by the
	// node): where is an instance primary, and is its DR enabled.
	mux.HandleFunc("GET "+peer.PathPrefix+"locate-instance/{name}", func(w http.ResponseWriter, r *http.Request) {
		d, err := m.cfg.Store.Dir(r.Context(), r.PathValue("name"))
		if err != nil || d.Role == model.RoleSecondary {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"region": m.cfg.Region, "instance": d.Name, "drEnabled": d.DREnabled})
	})
	srv := &http.Server{TLSConfig: cfg.ServerTLS(), Handler: mux}
	go srv.ServeTLS(ln, "", "")
	return "https://" + ln.Addr().String(), srv, nil
}

// countingKV records the reads of a Manager: which key ranges it read.
type countingKV struct {
	clientv3.KV
	mu     sync.Mutex
	reads  int
	ranges [][2]string // [key, rangeEnd] of reads of more than one key
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	op := clientv3.OpGet(key, opts...)
	c.mu.Lock()
	c.reads++
	if end := op.RangeBytes(); len(end) > 0 {
		c.ranges = append(c.ranges, [2]string{key, string(end)})
	}
	c.mu.Unlock()
	return c.KV.Get(ctx, key, opts...)
}

// scanned reports whether a range read touched prefix.
func (c *countingKV) scanned(prefix string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.ranges {
		if r[0] < clientv3.GetPrefixRangeEnd(prefix) && (r[1] == "\x00" || prefix < r[1]) {
			return true
		}
	}
	return false
}

// manager returns a Manager of r with its peer link, configured by opts.
func manager(t *testing.T, r *testRegion, opts ...func(*Config)) (*Manager, *countingKV) {
	t.Helper()
	cfg := Config{Store: r.st, Region: r.name, Peer: r.peer}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ckv := &countingKV{KV: m.kv}
	m.kv = ckv
	return m, ckv
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createDR creates name primary in westeurope, and its replicated copy
// (entry, scope, conf) in northeurope with a streaming ReplState at the
// source's current revision.
func createDR(t *testing.T, name string) (wr, nr *testRegion) {
	t.Helper()
	wr, nr = pair(t)
	ctx := ctxT(t)
	d := model.DirEntry{Name: name, IDScope: "0ne" + name, Primary: we, Secondary: ne, Epoch: 1, DREnabled: true, Role: model.RolePrimary}
	in := &model.Instance{Name: name, IDScope: d.IDScope, Location: we, SecondaryLocation: ne}
	if err := wr.st.CreateInstance(ctx, d, in); err != nil {
		t.Fatal(err)
	}
	d.Role = model.RoleSecondary
	if err := nr.st.CreateInstance(ctx, d, in); err != nil {
		t.Fatal(err)
	}
	setRepl(t, nr, name, model.ReplStreaming, headRev(t, wr))
	return wr, nr
}

// setRepl writes the ReplState of name in r, as the replicator would.
func setRepl(t *testing.T, r *testRegion, name, phase string, rev int64) model.ReplState {
	t.Helper()
	rs := model.ReplState{Instance: name, Source: we, Epoch: 1, Phase: phase, Rev: rev,
		SourceTime: time.Now().UTC().Round(time.Millisecond), AppliedAt: time.Now().UTC()}
	if err := r.st.Put(ctxT(t), store.ReplStateKey(name), string(mustJSON(t, rs))); err != nil {
		t.Fatal(err)
	}
	return rs
}

func headRev(t *testing.T, r *testRegion) int64 {
	t.Helper()
	resp, err := r.st.Client().Get(ctxT(t), "/opendps/none")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// write puts an enrollment record of instance in r through store.Update
// (the fenced write path) and returns its mod revision.
func write(ctx context.Context, r *testRegion, instance, id string) (int64, error) {
	key := store.Key(instance, store.KindEnrollment, id)
	err := r.st.Update(ctx, instance, func(tx *store.Tx) error {
		return tx.Put(key, map[string]string{"registrationId": id, "region": r.name})
	})
	if err != nil {
		return 0, err
	}
	rev, _, err := r.st.GetRev(ctx, key, nil, false)
	return rev, err
}

func remove(ctx context.Context, r *testRegion, instance, id string) error {
	return r.st.Update(ctx, instance, func(tx *store.Tx) error {
		tx.Delete(store.Key(instance, store.KindEnrollment, id))
		return nil
	})
}

func dirOf(t *testing.T, r *testRegion, name string) *model.DirEntry {
	t.Helper()
	d, err := r.st.Dir(ctxT(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantFenced(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrFenced) {
		t.Errorf("%s: err = %v, want store.ErrFenced", what, err)
	}
}

func itemOf(t *testing.T, rep *model.FailoverReport, name string) model.FailoverItem {
	t.Helper()
	for _, it := range rep.Items {
		if it.Instance == name {
			return it
		}
	}
	t.Fatalf("report has no item for %s: %+v", name, rep.Items)
	return model.FailoverItem{}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
