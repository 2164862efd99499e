// Package storetest starts real embedded etcd stores for tests: one per
// test with New, or one shared by the tests of a package with Shared,
// which TestMain stops:
//
//	var shared storetest.Shared
//
//	func TestMain(m *testing.M) { shared.Main(m) }
//
//	func TestX(t *testing.T) {
//		st := shared.Store(t)
//		...
//	}
package storetest

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/store"
)

// open starts a single-member store in dir on free loopback ports.
func open(dir, region string) (*store.Store, error) {
	c, err := netutil.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	p, err := netutil.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	return store.Open(context.Background(), store.Config{DataDir: dir, Name: "t1", Region: region,
		ClientURL: "http://" + c, PeerURL: "http://" + p})
}

// New starts a store in a temporary directory of t, closed when the test
// ends. An empty region hosts instances of every region as primary (see
// store.Config.Region).
func New(t testing.TB, region string) *store.Store {
	t.Helper()
	st, err := open(t.TempDir(), region)
	if err != nil {
		t.Fatalf("storetest: open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Shared is a store shared by the tests of a package, started on first
// use. Its zero value is ready to use and hosts every region; set Region
// before the first Store call to pin one. Store may be called from
// parallel tests. Tests sharing it should use their own instance names.
type Shared struct {
	// Region is the region of the store ("": every region).
	Region string

	once sync.Once
	st   *store.Store // set by once
	dir  string       // set by once
	err  error        // set by once
}

// Store returns the shared store, starting it on first use.
func (s *Shared) Store(t testing.TB) *store.Store {
	t.Helper()
	s.once.Do(func() {
		if s.dir, s.err = os.MkdirTemp("", "storetest-"); s.err != nil {
			return
		}
		s.st, s.err = open(s.dir, s.Region)
	})
	if s.err != nil {
		t.Fatalf("storetest: open store: %v", s.err)
	}
	return s.st
}

// Main runs the tests, stops the store if a test started it, removes its
// directory and exits with the tests' code. Call it from TestMain.
func (s *Shared) Main(m *testing.M) {
	code := m.Run()
	if s.st != nil {
		s.st.Close()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	os.Exit(code)
}
