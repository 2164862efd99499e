package instance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/regions"
)

// shared is one embedded etcd shared by the tests of this package (each
// test uses its own instance names).
var shared storetest.Shared

func TestMain(m *testing.M) { shared.Main(m) }

// fakeChecker fails hubs whose host name contains "bad" and counts calls.
type fakeChecker struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeChecker) Check(_ context.Context, cs string) error {
	f.mu.Lock()
	f.calls = append(f.calls, cs)
	f.mu.Unlock()
	if strings.Contains(cs, "bad") {
		return errors.New("hub: unauthorized")
	}
	return nil
}

func (f *fakeChecker) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func newManager(t *testing.T, region string) (*Manager, *fakeChecker) {
	t.Helper()
	fc := &fakeChecker{}
	m, err := New(Config{Store: shared.Store(t), Catalog: regions.Builtin(), Region: region,
		ServiceDomain: "localhost:8443", DeviceHost: "localhost:8443", HubChecker: fc})
	if err != nil {
		t.Fatal(err)
	}
	return m, fc
}

func mustCreate(t *testing.T, m *Manager, spec Spec) *View {
	t.Helper()
	v, err := m.Create(context.Background(), spec)
	if err != nil {
		t.Fatalf("Create(%s): %v", spec.Name, err)
	}
	return v
}

func ptr[T any](v T) *T { return &v }

func wantKind(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
}

// hubCS returns a hub connection string with a valid key.
func hubCS(host string) string {
	return "HostName=" + host + ";SharedAccessKeyName=iothubowner;SharedAccessKey=" + NewKey()
}
