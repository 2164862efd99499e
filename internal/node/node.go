package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/console"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/forward"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/obs"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/replicate"
	"github.com/opendps/opendps/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Node is a running opendps server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	catalog *regions.Catalog
	ca      *pki.CA // nil with an operator-supplied certificate
	store   *store.Store
	token   string

	hubTLS      *tls.Config
	instances   *instance.Manager
	enrollments *enrollment.Service
	engine      *engine.Engine
	mqtt        *mqttfront.Server                                    // nil until handlers, or when disabled
	getCert     func(*tls.ClientHelloInfo) (*tls.Certificate, error) // server certificates of every listener
	region      *region.Region
	console     *console.Console // the web console; nil until handlers

	// Disaster recovery (dr.go): nil peer without a peer link.
	peerCfg    *peer.Config
	peerClient *peer.Client
	peerMux    *http.ServeMux    // handlers of the peer listener
	fwdDevice  *forward.Device   // the engine, forwarding to other regions; nil without a peer link
	fwdService *forward.Service  // the service API, proxying to other regions; nil without a peer link
	failover   *dr.Manager       // fences, promotes and demotes instances; set by mountRegion
	repl       *replicate.Source // the region's replicator candidate; nil without a peer link

	nodeMetrics *obs.NodeCollector // registered with the default registry; nil when not

	servers []*http.Server
	addrs   map[string]string // listener name -> bound address

	readyc    chan struct{}
	errc      chan error
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Listener names.
const (
	ListenerDevice  = "device"
	ListenerService = "service"
	ListenerControl = "control"
	ListenerConsole = "console"
	ListenerMQTT    = "mqtt" // MQTT over TLS (Config.MQTTAddr); not HTTP
	ListenerPeer    = "peer" // the peer link between regions (Config.PeerAddr), mutual TLS
)

// Start validates cfg, opens the store and serves every listener. On error
// nothing is left running.
func Start(ctx context.Context, cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = newLogger(cfg.LogLevel, cfg.LogFormat)
	}
	n = &Node{cfg: cfg, log: log.With("node", cfg.Name, "region", cfg.Region, "zone", cfg.Zone),
		addrs: map[string]string{}, readyc: make(chan struct{}), errc: make(chan error, 8)}
	partial := n // "return nil, err" clears n before deferred calls run
	defer func() {
		if err != nil {
			partial.Close()
			n = nil
		}
	}()
	if n.catalog, err = regions.Load(cfg.RegionsFile); err != nil {
		return nil, err
	}
	if _, err = n.catalog.Lookup(cfg.Region); err != nil {
		return nil, fmt.Errorf("node: region: %w", err)
	}
	if err = os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	getCert, err := n.setupTLS()
	if err != nil {
		return nil, err
	}
	n.getCert = getCert
	if err = n.setupPeer(); err != nil {
		return nil, err
	}
	if n.token, err = loadOrCreateToken(cfg); err != nil {
		return nil, err
	}
	if n.store, err = n.openStore(ctx); err != nil {
		return nil, err
	}
	lns, err := n.listen()
	if err != nil {
		return nil, err
	}
	handlers, err := n.handlers()
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	n.serve(lns, getCert, handlers)
	n.region.Start()
	n.watchMember()
	close(n.readyc)
	n.log.Info("node ready", "device", n.addrs[ListenerDevice], "service", n.addrs[ListenerService],
		"control", n.addrs[ListenerControl], "console", n.addrs[ListenerConsole], "mqtt", n.addrs[ListenerMQTT])
	return n, nil
}

func (n *Node) setupTLS() (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if n.cfg.TLSCertFile != "" {
		return pki.StaticCertificate(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
	}
	dir := n.cfg.CADir
	if dir == "" {
		dir = filepath.Join(n.cfg.DataDir, "tls")
	}
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	n.ca = ca
	names := append([]string{"localhost", "127.0.0.1"}, n.cfg.HostNames...)
	suffix := "." + strings.ToLower(n.cfg.ServiceDomain)
	m, err := pki.NewMinter(ca, names, func(host string) bool {
		label, ok := strings.CutSuffix(host, suffix)
		return ok && label != "" && !strings.Contains(label, ".") && len(label) <= 63
	})
	if err != nil {
		return nil, err
	}
	return m.GetCertificate, nil
}

func (n *Node) openStore(ctx context.Context) (*store.Store, error) {
	sc := store.Config{DataDir: n.cfg.DataDir, Name: n.cfg.Name, Region: n.cfg.Region,
		ClientURL: "http://" + n.cfg.EtcdClientAddr, PeerURL: "http://" + n.cfg.EtcdPeerAddr,
		InitialCluster: n.cfg.EtcdInitialCluster, HostedRegions: n.cfg.HostedRegions, External: n.cfg.EtcdEndpoints,
		ClusterState: n.cfg.EtcdClusterState, ClusterToken: n.cfg.EtcdClusterToken,
		HeartbeatInterval: n.cfg.EtcdHeartbeat, ElectionTimeout: n.cfg.EtcdElectionTimeout,
		RequestTimeout: n.cfg.StoreTimeout, Logger: n.log.With("component", "store")}
	return store.Open(ctx, sc)
}

// listen binds every listener, so that handlers know the real ports.
func (n *Node) listen() (map[string]net.Listener, error) {
	lns := map[string]net.Listener{}
	for _, l := range []struct{ name, addr string }{
		{ListenerDevice, n.cfg.DeviceAddr}, {ListenerService, n.cfg.ServiceAddr},
		{ListenerControl, n.cfg.ControlAddr}, {ListenerConsole, n.cfg.ConsoleAddr}, {ListenerMQTT, n.cfg.MQTTAddr},
		{ListenerPeer, n.cfg.PeerAddr},
	} {
		if l.addr == "" && (l.name == ListenerMQTT || l.name == ListenerPeer) {
			continue // disabled
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return nil, fmt.Errorf("node: listen %s %s: %w", l.name, l.addr, err)
		}
		lns[l.name] = ln
		n.addrs[l.name] = ln.Addr().String()
	}
	return lns, nil
}

func (n *Node) serve(lns map[string]net.Listener, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), handlers map[string]http.Handler) {
	for name, ln := range lns {
		if name == ListenerMQTT {
			n.serveMQTT(ln)
			continue
		}
		tlsCfg := pki.ServerTLS(getCert)
		if name == ListenerPeer {
			tlsCfg = n.peerCfg.ServerTLS()
		}
		srv := &http.Server{
			Handler:           handlers[name],
			TLSConfig:         tlsCfg,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
		}
		n.servers = append(n.servers, srv)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.errc <- fmt.Errorf("node: %s listener: %w", name, err)
			}
		}()
	}
}

// serveMQTT serves MQTT over TLS on ln with the server handlers made.
func (n *Node) serveMQTT(ln net.Listener) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.mqtt.Serve(ln); err != nil && !errors.Is(err, mqttfront.ErrServerClosed) {
			n.errc <- fmt.Errorf("node: %s listener: %w", ListenerMQTT, err)
		}
	}()
}

// ReadyNotify is closed when every listener serves.
func (n *Node) ReadyNotify() <-chan struct{} { return n.readyc }

// Err reports fatal errors of the running node (a listener or the
// embedded etcd member failing).
func (n *Node) Err() <-chan error { return n.errc }

// Addr returns the bound address of a listener (ListenerDevice, ...).
func (n *Node) Addr(listener string) string { return n.addrs[listener] }

// Region returns the view of the node's region (status, membership).
func (n *Node) Region() *region.Region { return n.region }

// Store returns the node's store.
func (n *Node) Store() *store.Store { return n.store }

// CA returns the local CA, or nil when an operator certificate is served.
func (n *Node) CA() *pki.CA { return n.ca }

// Catalog returns the region catalog.
func (n *Node) Catalog() *regions.Catalog { return n.catalog }

// OperatorToken returns the control API credential.
func (n *Node) OperatorToken() string { return n.token }

// Instances returns the control-plane manager.
func (n *Node) Instances() *instance.Manager { return n.instances }

// Enrollments returns the enrollment service.
func (n *Node) Enrollments() *enrollment.Service { return n.enrollments }

// HubTLS returns the client TLS configuration for linked hubs.
func (n *Node) HubTLS() *tls.Config { return n.hubTLS }

// ServiceHost returns the service API host[:port] of instance name.
func (n *Node) ServiceHost(name string) string { return name + "." + n.serviceDomainWithPort() }

// DeviceHost returns the device endpoint host[:port] reported to tenants.
func (n *Node) DeviceHost() string { return n.publicDeviceHost() }

// Config returns the configuration the node runs with.
func (n *Node) Config() Config { return n.cfg }

// Close stops the listeners (letting requests in flight finish for a few
// seconds) and then the store. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range n.servers {
			s.Shutdown(ctx)
		}
		if n.mqtt != nil { // MQTT over TLS, and over WebSocket (hijacked, so not Shutdown's)
			n.mqtt.Close()
		}
		n.wg.Wait()
		if n.console != nil { // its lag sampler reads the store
			n.console.Close()
		}
		if n.repl != nil { // before the store: it reads and writes through it
			n.repl.Close()
		}
		if n.region != nil {
			n.region.Close() // deregisters the node first
		}
		if n.engine != nil {
			n.engine.Close()
		}
		if n.nodeMetrics != nil {
			prometheus.Unregister(n.nodeMetrics)
		}
		if n.store != nil {
			n.store.Close()
		}
		n.log.Info("node stopped")
	})
	return nil
}

func loadOrCreateToken(cfg Config) (string, error) {
	if cfg.OperatorToken != "" {
		return cfg.OperatorToken, nil
	}
	p := filepath.Join(cfg.DataDir, "operator-token")
	if b, err := os.ReadFile(p); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	buf := make([]byte, 32)
	rand.Read(buf)
	t := base64.RawURLEncoding.EncodeToString(buf)
	if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
