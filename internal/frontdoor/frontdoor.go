// Package frontdoor is the global endpoint of a multi-region deployment
// (docs/dr-design.md, "Forwarding and the global endpoint"): a TCP
// pass-through with one listener per API (device HTTPS, MQTT, service)
// that sends each new connection to a healthy node of the first healthy
// region in its list. TLS stays end to end: the front door never
// terminates it, so devices see the regions' certificates and client
// certificates reach the nodes. It stands in for global DNS: a device
// keeps one host name and one ID scope across a failover, since every
// node accepts every ID scope (internal/forward).
//
// Health: every CheckInterval each backend gets a TCP connect, and each
// node with a Ready URL a GET of it (200 = ready); a backend is healthy
// when both pass. A failed dial of a new connection marks the backend down
// at once and the next candidate is tried. Established connections are
// never moved.
//
// Embedding:
//
//	fd, err := frontdoor.New(frontdoor.Config{DeviceAddr: "127.0.0.1:0", Regions: regions})
//	if err != nil { ... }
//	defer fd.Close()
//	addr := fd.Addr(frontdoor.APIDevice)
package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// FrontDoor is a running front door. Its methods are safe for concurrent
// use.
type FrontDoor struct {
	cfg      Config
	log      *slog.Logger
	lns      map[string]net.Listener // api -> listener
	status   *http.Server            // nil without StatusAddr
	statusLn net.Listener
	backends []*backend
	nodes    []*nodeState
	hc       *http.Client // readiness checks

	next atomic.Uint64 // round robin within a region

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, both sides; guarded by mu
	routes map[string]string     // api -> region in use ("" none); guarded by mu
	closed bool                  // guarded by mu

	done      chan struct{}
	errc      chan error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// backend is one API listener of one node.
type backend struct {
	region  string
	ri      int // index of the region in Config.Regions
	api     string
	addr    string
	node    *nodeState
	up      atomic.Bool // TCP connect passed at the last check
	healthy atomic.Bool // up and its node ready
}

type nodeState struct {
	ready string      // URL, "" when none
	ok    atomic.Bool // last readiness check passed (true without URL)
}

// New validates cfg, binds the listeners, runs one round of health checks
// and starts serving. Close stops it.
func New(cfg Config) (_ *FrontDoor, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &FrontDoor{cfg: cfg, log: cfg.Log, lns: map[string]net.Listener{}, conns: map[net.Conn]struct{}{},
		routes: map[string]string{}, done: make(chan struct{}), errc: make(chan error, 1)}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	f.setupBackends()
	for _, api := range APIs {
		addr := cfg.listenAddr(api)
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("frontdoor: listen %s on %s: %w", api, addr, err)
		}
		f.lns[api] = ln
	}
	if cfg.StatusAddr != "" {
		if f.statusLn, err = net.Listen("tcp", cfg.StatusAddr); err != nil {
			return nil, fmt.Errorf("frontdoor: listen status on %s: %w", cfg.StatusAddr, err)
		}
		f.status = &http.Server{Handler: f.statusHandler(), ReadHeaderTimeout: 5 * time.Second}
		f.wg.Go(func() { f.status.Serve(f.statusLn) })
	}
	f.checkAll()
	f.wg.Go(f.checkLoop)
	for api, ln := range f.lns {
		f.wg.Go(func() { f.serve(api, ln) })
	}
	return f, nil
}

// Run runs a front door until ctx is done or it fails.
func Run(ctx context.Context, cfg Config) error {
	f, err := New(cfg)
	if err != nil {
		return err
	}
	defer f.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-f.Err():
		return err
	}
}

func (f *FrontDoor) setupBackends() {
	for ri, r := range f.cfg.Regions {
		for _, n := range r.Nodes {
			ns := &nodeState{ready: readyURL(n.Ready)}
			ns.ok.Store(ns.ready == "")
			f.nodes = append(f.nodes, ns)
			for _, api := range APIs {
				if a := n.addr(api); a != "" {
					f.backends = append(f.backends, &backend{region: r.Name, ri: ri, api: api, addr: a, node: ns})
				}
			}
		}
	}
	f.hc = &http.Client{Timeout: f.cfg.DialTimeout, Transport: &http.Transport{
		TLSClientConfig: f.cfg.ReadyTLS, DisableKeepAlives: true}}
}

// Addr returns the bound address of api's listener, "" when not served.
func (f *FrontDoor) Addr(api string) string {
	if ln := f.lns[api]; ln != nil {
		return ln.Addr().String()
	}
	return ""
}

// StatusAddr returns the bound address of the status listener, or "".
func (f *FrontDoor) StatusAddr() string {
	if f.statusLn == nil {
		return ""
	}
	return f.statusLn.Addr().String()
}

// Err reports a fatal error of a listener.
func (f *FrontDoor) Err() <-chan error { return f.errc }

// Close stops the listeners and closes every open connection. It is
// idempotent.
func (f *FrontDoor) Close() error {
	f.closeOnce.Do(func() {
		close(f.done)
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		for _, ln := range f.lns {
			ln.Close()
		}
		if f.status != nil {
			f.status.Close()
		} else if f.statusLn != nil {
			f.statusLn.Close()
		}
		f.wg.Wait()
	})
	return nil
}

// serve accepts connections of api until the listener closes.
func (f *FrontDoor) serve(api string, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-f.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			select {
			case f.errc <- fmt.Errorf("frontdoor: accept %s: %w", api, err):
			default:
			}
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Go(func() { f.handle(api, c) })
	}
}

// track records an open connection; false once closed.
func (f *FrontDoor) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *FrontDoor) untrack(cs ...net.Conn) {
	f.mu.Lock()
	for _, c := range cs {
		delete(f.conns, c)
		c.Close()
	}
	f.mu.Unlock()
}

// handle connects c to a backend of api and copies bytes both ways.
func (f *FrontDoor) handle(api string, c net.Conn) {
	up := f.dial(api)
	if up == nil {
		f.untrack(c)
		return
	}
	if !f.track(up) {
		f.untrack(c, up)
		return
	}
	pipe(c, up, f.cfg.IdleTimeout)
	f.untrack(c, up)
}

// dial connects to the first candidate backend of api that accepts,
// marking those that refuse down.
func (f *FrontDoor) dial(api string) net.Conn {
	d := net.Dialer{Timeout: f.cfg.DialTimeout}
	for _, b := range f.candidates(api) {
		up, err := d.Dial("tcp", b.addr)
		if err == nil {
			return up
		}
		b.up.Store(false)
		b.healthy.Store(false)
		f.log.Warn("frontdoor: backend refused a connection", "api", api, "region", b.region, "backend", b.addr)
	}
	f.log.Warn("frontdoor: no healthy backend", "api", api)
	return nil
}

// candidates returns the healthy backends of api: those of the first
// region that has one, rotated for round robin, then those of the other
// regions in order.
func (f *FrontDoor) candidates(api string) []*backend {
	var out []*backend
	first := -1
	start := 0
	for _, b := range f.backends {
		if b.api != api || !b.healthy.Load() {
			continue
		}
		if first < 0 || b.ri < first {
			first = b.ri
		}
		out = append(out, b)
	}
	// f.backends is in region order, so out is too.
	for i, b := range out {
		if b.ri != first {
			break
		}
		start = i + 1
	}
	if start > 1 {
		k := int(f.next.Add(1) % uint64(start))
		rot := append(append([]*backend{}, out[k:start]...), out[:k]...)
		copy(out, rot)
	}
	return out
}
