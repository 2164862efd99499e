package instance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// testStore is one embedded etcd shared by the tests of this package (each
// test uses its own instance names).
var testStore *store.Store

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "instance-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, _ := netutil.FreeLoopbackAddr()
	p, _ := netutil.FreeLoopbackAddr()
	testStore, err = store.Open(context.Background(), store.Config{DataDir: dir, Name: "t1",
		ClientURL: "http://" + c, PeerURL: "http://" + p})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testStore.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

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
	m, err := New(Config{Store: testStore, Catalog: regions.Builtin(), Region: region,
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

// testCA is a CA certificate and its key.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a PEM leaf certificate with subject CN cn signed by ca.
func (ca *testCA) issue(t testing.TB, cn string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
