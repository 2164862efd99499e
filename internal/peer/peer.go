// Package peer is the authenticated link between the regions of a
// deployment (docs/dr-design.md): replication, fencing and the forwarding
// of device and service requests to an instance's primary region travel
// over it, and nothing else may call it.
//
// Every region has a certificate from the deployment's region CA whose URI
// SAN is opendps-region://{region}; both sides of a call present one
// (mutual TLS). A server learns the calling region from the verified chain
// (RegionOf); a client accepts only the region it dialled.
package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// URIScheme prefixes the region name in a region certificate's URI SAN.
const URIScheme = "opendps-region"

// PathPrefix is the path prefix of every peer endpoint.
const PathPrefix = "/opendps/peer/"

// RegionURI is the URI SAN of region's certificate.
func RegionURI(region string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: strings.ToLower(region)}
}

// CertRegion returns the region named by a certificate's URI SAN, or "".
func CertRegion(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == URIScheme && u.Host != "" {
			return u.Host
		}
	}
	return ""
}

// RegionOf returns the calling region of a request served with ServerTLS,
// or "" when the request carries no verified region certificate.
func RegionOf(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return CertRegion(r.TLS.VerifiedChains[0][0])
}

// Config configures both sides of the link.
type Config struct {
	// Region is this region's name.
	Region string
	// Certificate is this region's certificate (URI SAN
	// opendps-region://{Region}), served and presented as client.
	Certificate tls.Certificate
	// Roots verify other regions' certificates.
	Roots *x509.CertPool
	// Peers maps other regions to the base URL of their peer listener
	// (https://host:port); one region may list several URLs
	// (comma-separated), tried in turn.
	Peers map[string]string
}

// Validate checks c.
func (c *Config) Validate() error {
	if c.Region == "" {
		return errors.New("peer: config: Region is required")
	}
	if len(c.Certificate.Certificate) == 0 {
		return errors.New("peer: config: Certificate is required")
	}
	if c.Roots == nil {
		return errors.New("peer: config: Roots is required")
	}
	for r, u := range c.Peers {
		for _, one := range strings.Split(u, ",") {
			pu, err := url.Parse(strings.TrimSpace(one))
			if err != nil || pu.Scheme != "https" || pu.Host == "" {
				return fmt.Errorf("peer: config: peer %s: %q is not an https:// URL", r, one)
			}
		}
	}
	return nil
}

// ServerTLS returns the server configuration of the peer listener: it
// requires a client certificate chaining to the roots and naming a region.
func (c *Config) ServerTLS() *tls.Config {
	cert := c.Certificate
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.Roots,
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || CertRegion(chains[0][0]) == "" {
				return errors.New("peer: client certificate names no region")
			}
			return nil
		},
	}
}

// clientTLS is the client configuration for calling region: it presents
// this region's certificate and accepts only a server certificate naming
// region (host names are not checked: peers are addressed by URL, often an
// IP address).
func (c *Config) clientTLS(region string) *tls.Config {
	roots := c.Roots
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{c.Certificate},
		InsecureSkipVerify: true, // verified below, against the region
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer: server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("peer: server certificate: %w", err)
			}
			if got := CertRegion(leaf); got != strings.ToLower(region) {
				return fmt.Errorf("peer: server certificate names region %q, want %q", got, region)
			}
			return nil
		},
	}
}

// Client calls other regions. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu      sync.Mutex
	clients map[string]*http.Client // region -> client; guarded by mu
	next    map[string]int          // region -> index of the URL to try first
}

// NewClient returns a client of the peers in cfg.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, clients: map[string]*http.Client{}, next: map[string]int{}}, nil
}

// Region is this region's name.
func (c *Client) Region() string { return c.cfg.Region }

// Peers returns the other regions the client knows, sorted.
func (c *Client) Peers() []string {
	out := make([]string, 0, len(c.cfg.Peers))
	for r := range c.cfg.Peers {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// Knows reports whether region is a known peer.
func (c *Client) Knows(region string) bool { _, ok := c.cfg.Peers[region]; return ok }

// ErrUnknownPeer is returned for a region the client has no URL of.
var ErrUnknownPeer = errors.New("peer: unknown region")

// HTTPClient returns the HTTP client for calling region (for reverse
// proxies and streaming calls), with its base URLs.
func (c *Client) HTTPClient(region string) (*http.Client, []string, error) {
	raw, ok := c.cfg.Peers[region]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownPeer, region)
	}
	var urls []string
	for _, u := range strings.Split(raw, ",") {
		urls = append(urls, strings.TrimRight(strings.TrimSpace(u), "/"))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hc := c.clients[region]
	if hc == nil {
		tr := &http.Transport{
			TLSClientConfig:     c.cfg.clientTLS(region),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 3 * time.Second,
		}
		hc = &http.Client{Transport: tr}
		c.clients[region] = hc
	}
	// Rotate so that the URL that answered last is tried first.
	if n := c.next[region]; n > 0 && n < len(urls) {
		urls = append(urls[n:], urls[:n]...)
	}
	return hc, urls, nil
}

// Do sends a request with body (may be nil) to path on region, trying each
// of its URLs until one answers (any HTTP status is an answer). The caller
// closes the response body.
func (c *Client) Do(ctx context.Context, region, method, path string, header http.Header, body []byte) (*http.Response, error) {
	hc, urls, err := c.HTTPClient(region)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, base := range urls {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(string(body))
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err == nil {
			if i > 0 {
				c.mu.Lock()
				c.next[region] = (c.next[region] + i) % len(urls)
				c.mu.Unlock()
			}
			return resp, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("peer: %s unreachable: %w", region, errors.Join(errs...))
}
