// Package hub is a client of the Azure IoT Hub registry REST API
// (api-version 2021-04-12): device identities and device twins, the part of
// a linked hub that a provisioning service uses. It speaks to real IoT hubs
// and to the simulator of package hubsim alike.
//
// Authentication is a SAS token built from a hub connection string
// ("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=k"), with
// sr = the HostName exactly as written there (port included) and skn = the
// policy name; it is renewed before it expires.
//
// Example:
//
//	c, err := hub.New(connStr)
//	if err != nil { ... }
//	d, err := c.CreateOrUpdateDevice(ctx, hub.Device{DeviceID: "dev1"})
//	// d.Auth.SymmetricKey.PrimaryKey holds the key the hub generated.
//
// A Client is safe for concurrent use.
package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/netutil"
	"github.com/opendps/opendps/internal/sas"
)

const (
	// DefaultTimeout bounds one call whose context has no deadline.
	DefaultTimeout = 5 * time.Second
	// tokenTTL is the lifetime of the SAS tokens the client signs;
	// tokenRenew is how long before expiry a token is replaced.
	tokenTTL   = time.Hour
	tokenRenew = 5 * time.Minute
	// maxBody bounds a response body read into memory.
	maxBody = 4 << 20
)

// Client calls one hub's registry API. Create it with New.
type Client struct {
	host    string // HostName of the connection string, maybe with a port
	keyName string
	key     string // base64
	http    *http.Client
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu       sync.Mutex
	token    string    // guarded by mu
	tokenExp time.Time // guarded by mu
}

// Option configures a Client.
type Option func(*Client)

// WithTLSConfig sets the TLS configuration of the default transport (for
// example one trusting a local CA). It is ignored after WithHTTPClient.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.http = newHTTPClient(cfg) }
}

// WithHTTPClient makes the client send requests through hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithTimeout sets the bound of a call whose context has no deadline; zero
// or negative means DefaultTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) { c.log = l }
}

// WithClock sets the clock used for token expiry (tests).
func WithClock(now func() time.Time) Option {
	return func(c *Client) { c.now = now }
}

// New returns a client for the hub of connStr. SharedAccessKeyName defaults
// to "iothubowner"; a DeviceId in the string is an error (that is a device
// connection string, which cannot call the registry).
func New(connStr string, opts ...Option) (*Client, error) {
	cs, err := sas.ParseConnectionString(connStr)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if cs.DeviceID != "" {
		return nil, fmt.Errorf("hub: %w: a device connection string cannot manage the registry", sas.ErrConnectionString)
	}
	c := &Client{host: cs.HostName, keyName: cs.SharedAccessKeyName, key: cs.SharedAccessKey, now: time.Now}
	if c.keyName == "" {
		c.keyName = OwnerPolicy
	}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http = newHTTPClient(nil)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func newHTTPClient(cfg *tls.Config) *http.Client {
	// Our own copy, speaking HTTP/1.1 only: a tls.Config shared with an
	// HTTP/2 transport gets "h2" added to its NextProtos, and this HTTP/1.1
	// transport would then negotiate h2 and fail on the server's frames.
	if cfg != nil {
		cfg = cfg.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.NextProtos = []string{"http/1.1"}
	t := &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		DialContext:     netutil.DialContext,
		TLSClientConfig: cfg,
		// HTTP/1.1 with a pool: cheaper per call than HTTP/2 in Go, and
		// what every IoT Hub SDK uses.
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: t}
}

// HostName returns the HostName of the connection string (with its port,
// if it had one).
func (c *Client) HostName() string { return c.host }

// sasToken returns a cached token, signing a new one when it is near expiry.
func (c *Client) sasToken() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.token != "" && c.tokenExp.Sub(now) > tokenRenew {
		return c.token, nil
	}
	exp := now.Add(tokenTTL)
	tok, err := sas.Build(c.host, c.key, c.keyName, exp)
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	c.token, c.tokenExp = tok, exp
	return tok, nil
}

// request describes one registry call.
type request struct {
	method  string
	path    string     // already escaped, without query
	query   url.Values // api-version is added
	ifMatch string     // "" = no If-Match header
	body    any        // nil = no body
	out     any        // nil = discard the answer body
}

// do sends req and decodes a 2xx answer into req.out.
func (c *Client) do(ctx context.Context, req request) error {
	op := req.method + " " + req.path
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	hr, err := c.newHTTPRequest(ctx, req)
	if err != nil {
		return err
	}
	start := c.now()
	resp, err := c.http.Do(hr)
	if err != nil {
		c.log.Debug("hub call failed", "hub", c.host, "op", op, "err", err)
		return unavailable(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return unavailable(op, err)
	}
	c.log.Debug("hub call", "hub", c.host, "op", op, "status", resp.StatusCode, "took", c.now().Sub(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return newError(op, resp.StatusCode, resp.Header, body)
	}
	if req.out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, req.out); err != nil {
		return fmt.Errorf("hub: %s: decode answer: %w", op, err)
	}
	return nil
}

func (c *Client) newHTTPRequest(ctx context.Context, req request) (*http.Request, error) {
	q := url.Values{}
	for k, v := range req.query {
		q[k] = v
	}
	q.Set("api-version", APIVersion)
	u := "https://" + c.host + req.path + "?" + q.Encode()
	var body io.Reader
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("hub: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	tok, err := c.sasToken()
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Authorization", tok)
	hr.Header.Set("Accept", "application/json")
	if body != nil {
		hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if req.ifMatch != "" {
		hr.Header.Set("If-Match", quoteETag(req.ifMatch))
	}
	return hr, nil
}

// quoteETag quotes an etag for If-Match, as the Azure SDKs do ("*" too).
func quoteETag(e string) string {
	if len(e) >= 2 && e[0] == '"' && e[len(e)-1] == '"' {
		return e
	}
	return `"` + e + `"`
}
