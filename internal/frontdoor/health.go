package frontdoor

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// readyURL completes a readiness URL: a URL without path gets /readyz.
func readyURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/readyz"
	}
	return u.String()
}

// checkLoop checks every backend each CheckInterval until Close.
func (f *FrontDoor) checkLoop() {
	t := time.NewTicker(f.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-t.C:
			f.checkAll()
		}
	}
}

// checkAll runs one round of checks, all at once, then logs the regions
// each API routes to when they changed.
func (f *FrontDoor) checkAll() {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-f.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for _, n := range f.nodes {
		if n.ready != "" {
			wg.Go(func() { n.ok.Store(f.ready(ctx, n.ready)) })
		}
	}
	for _, b := range f.backends {
		wg.Go(func() {
			d := net.Dialer{Timeout: f.cfg.DialTimeout}
			c, err := d.DialContext(ctx, "tcp", b.addr)
			if err == nil {
				c.Close()
			}
			b.up.Store(err == nil)
		})
	}
	wg.Wait()
	for _, b := range f.backends {
		b.healthy.Store(b.up.Load() && b.node.ok.Load())
	}
	f.logRoutes()
}

// ready reports whether GET url answers 200.
func (f *FrontDoor) ready(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// route returns the region new connections of api go to, "" for none.
func (f *FrontDoor) route(api string) string {
	for _, b := range f.backends {
		if b.api == api && b.healthy.Load() {
			return b.region
		}
	}
	return ""
}

// logRoutes logs the region of each served API when it changed.
func (f *FrontDoor) logRoutes() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for api := range f.lns {
		r := f.route(api)
		if old, ok := f.routes[api]; ok && old == r {
			continue
		}
		f.routes[api] = r
		if r == "" {
			f.log.Warn("frontdoor: no healthy region", "api", api)
		} else {
			f.log.Info("frontdoor: routing", "api", api, "region", r)
		}
	}
}
