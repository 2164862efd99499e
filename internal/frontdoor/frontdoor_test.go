package frontdoor

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/pki"
)

// fakeNode is a TLS backend that greets with its region's name and then
// echoes every byte until EOF. It can be stopped (listener and open
// connections closed) and started again on the same address.
type fakeNode struct {
	t      *testing.T
	region string
	tls    *tls.Config
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newFakeNode(t *testing.T, region string, cfg *tls.Config) *fakeNode {
	n := &fakeNode{t: t, region: region, tls: cfg, addr: "127.0.0.1:0"}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *fakeNode) start() {
	ln, err := tls.Listen("tcp", n.addr, n.tls)
	if err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.ln, n.addr = ln, ln.Addr().String()
	n.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns = append(n.conns, c)
			n.mu.Unlock()
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", n.region)
				io.Copy(c, c)
			}()
		}
	}()
}

func (n *fakeNode) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln != nil {
		n.ln.Close()
		n.ln = nil
	}
	for _, c := range n.conns {
		c.Close()
	}
	n.conns = nil
}

type fixture struct {
	fd     *FrontDoor
	client *tls.Config
	a, b   *fakeNode
	aReady atomic.Bool
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("frontdoor test")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"dps.test", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := &tls.Config{Certificates: []tls.Certificate{cert}}
	fx := &fixture{client: &tls.Config{RootCAs: ca.CertPool(), ServerName: "dps.test"}}
	fx.a = newFakeNode(t, "westeurope", srv)
	fx.b = newFakeNode(t, "northeurope", srv)
	fx.aReady.Store(true)
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !fx.aReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(ready.Close)
	fx.fd, err = New(Config{DeviceAddr: "127.0.0.1:0", StatusAddr: "127.0.0.1:0",
		CheckInterval: 50 * time.Millisecond, DialTimeout: 300 * time.Millisecond,
		Regions: []Region{
			{Name: "westeurope", Nodes: []Node{{Device: fx.a.addr, Ready: ready.URL}}},
			{Name: "northeurope", Nodes: []Node{{Device: fx.b.addr}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.fd.Close() })
	return fx
}

// connect opens a TLS connection through the front door and returns the
// region that answered.
func (fx *fixture) connect(t *testing.T) (*tls.Conn, string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", fx.fd.Addr(APIDevice), fx.client)
	if err != nil {
		t.Fatalf("dial through the front door: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting: %v", err)
	}
	// Greetings are short; LimitReader+bufio may read past the line only
	// if the backend sent more, which it does not before we write.
	return c, strings.TrimSpace(line)
}

func (fx *fixture) waitRoute(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for fx.fd.Status().Routes[APIDevice] != want {
		if time.Now().After(deadline) {
			t.Fatalf("route is %q, want %q", fx.fd.Status().Routes[APIDevice], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPassesBytesThroughUnchanged(t *testing.T) {
	fx := setup(t)
	c, region := fx.connect(t)
	defer c.Close()
	if region != "westeurope" {
		t.Fatalf("first region answered %q, want westeurope", region)
	}
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Error("the echo differs from what was sent")
	}
}

func TestNewConnectionsFailOver(t *testing.T) {
	fx := setup(t)
	old, region := fx.connect(t)
	defer old.Close()
	if region != "westeurope" {
		t.Fatalf("answered by %q, want westeurope", region)
	}
	fx.a.stop() // the whole first region goes down
	// The very next connection already goes to the second region: the
	// refused dial marks the backend down without waiting for a check.
	c, region := fx.connect(t)
	c.Close()
	if region != "northeurope" {
		t.Errorf("after westeurope went down, answered by %q, want northeurope", region)
	}
	fx.waitRoute(t, "northeurope")
	if _, err := old.Read(make([]byte, 1)); err == nil {
		t.Error("a connection to the stopped region stayed open")
	}
	// It comes back: new connections return to the first region.
	fx.a.start()
	fx.waitRoute(t, "westeurope")
	c, region = fx.connect(t)
	c.Close()
	if region != "westeurope" {
		t.Errorf("after westeurope came back, answered by %q", region)
	}
}

func TestNotReadyRegionIsSkipped(t *testing.T) {
	fx := setup(t)
	fx.aReady.Store(false) // accepts TCP, but /readyz says 503
	fx.waitRoute(t, "northeurope")
	c, region := fx.connect(t)
	c.Close()
	if region != "northeurope" {
		t.Errorf("answered by %q, want northeurope", region)
	}
	resp, err := http.Get("http://" + fx.fd.StatusAddr() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestHalfCloseAndIdleTimeout(t *testing.T) {
	// A plain TCP backend that answers only after the client's EOF.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "got %d bytes", n)
			}()
		}
	}()
	fd, err := New(Config{ServiceAddr: "127.0.0.1:0", IdleTimeout: 300 * time.Millisecond,
		Regions: []Region{{Name: "r1", Nodes: []Node{{Service: ln.Addr().String()}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	c, err := net.Dial("tcp", fd.Addr(APIService))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "got 5 bytes" {
		t.Errorf("after half-close read %q, %v; want the answer", b, err)
	}

	idle, err := net.Dial("tcp", fd.Addr(APIService))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	start := time.Now()
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: read %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle connection closed after %v, want about 300ms", d)
	}
}

func TestParseRegion(t *testing.T) {
	r, err := ParseRegion("westeurope=10.0.0.1:443/10.0.0.1:8883/10.0.0.1:8444/https://10.0.0.1:8445,10.0.0.2:443/-/-")
	if err != nil {
		t.Fatal(err)
	}
	want := Region{Name: "westeurope", Nodes: []Node{
		{Device: "10.0.0.1:443", MQTT: "10.0.0.1:8883", Service: "10.0.0.1:8444", Ready: "https://10.0.0.1:8445"},
		{Device: "10.0.0.2:443"},
	}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
	for _, bad := range []string{"", "westeurope", "westeurope=", "w=1.2.3.4:1/2"} {
		if _, err := ParseRegion(bad); err == nil {
			t.Errorf("ParseRegion(%q) accepted", bad)
		}
	}
	if got := readyURL("https://10.0.0.1:8445"); got != "https://10.0.0.1:8445/readyz" {
		t.Errorf("readyURL = %q", got)
	}
}
