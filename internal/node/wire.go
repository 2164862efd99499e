package node

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/console"
	"github.com/opendps/opendps/internal/controlapi"
	"github.com/opendps/opendps/internal/deviceapi/httpfront"
	"github.com/opendps/opendps/internal/deviceapi/mqttfront"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/hub"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/obs"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/replicate"
	"github.com/opendps/opendps/internal/serviceapi"
	"github.com/opendps/opendps/internal/throttle"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handlers builds the handler of each listener.
func (n *Node) handlers() (map[string]http.Handler, error) {
	notFound := apierr.Handler(n.log, func(w http.ResponseWriter, r *http.Request) error {
		return apierr.New(apierr.CodeNotFound, "No route for %s %s.", r.Method, r.URL.Path)
	})
	n.hubTLS = n.outboundTLS()
	if err := n.newRegion(); err != nil {
		return nil, err
	}
	mgr, err := instance.New(instance.Config{
		Store: n.store, Catalog: n.catalog, Region: n.cfg.Region, HostedRegions: n.cfg.HostedRegions,
		ServiceDomain: n.serviceDomainWithPort(), DeviceHost: n.publicDeviceHost(),
		HubChecker: instance.RegistryChecker{Options: []hub.Option{hub.WithTLSConfig(n.hubTLS)}},
		Zones:      n.region,
		Log:        n.log.With("component", "instance"),
	})
	if err != nil {
		return nil, err
	}
	n.instances = mgr
	n.enrollments = enrollment.New(n.store)
	ctl, err := controlapi.New(controlapi.Config{Manager: mgr, Catalog: n.catalog, Token: n.token, Log: n.log.With("component", "controlapi"), Store: n.store})
	if err != nil {
		return nil, err
	}
	svc, err := serviceapi.New(serviceapi.Config{Store: n.store, Enrollments: n.enrollments,
		ServiceDomain: n.cfg.ServiceDomain, Logger: n.log.With("component", "serviceapi")})
	if err != nil {
		return nil, err
	}
	limits := n.cfg.Throttle
	limits.Nodes = n.region.Nodes // per-instance limits are shared by the region's live nodes
	limiter, err := throttle.New(limits)
	if err != nil {
		return nil, err
	}
	n.engine, err = engine.New(engine.Config{Store: n.store, Enrollments: n.enrollments, Region: n.cfg.Region,
		HubTLS: n.hubTLS, FastPath: n.cfg.FastPath, Throttle: limiter, Log: n.log.With("component", "engine")})
	if err != nil {
		return nil, err
	}
	dev, svcFront, err := n.withForwarding(n.engine, svc)
	if err != nil {
		return nil, err
	}
	dev = obs.Device(dev) // device metrics, every protocol (docs/observability.md)
	device, err := httpfront.New(httpfront.Config{Engine: dev, Log: n.log.With("component", "httpfront")})
	if err != nil {
		return nil, err
	}
	if device, err = n.withMQTT(device, dev); err != nil {
		return nil, err
	}
	control := http.NewServeMux()
	n.mountOps(control)
	if err := n.mountRegion(control); err != nil {
		return nil, err
	}
	control.Handle("/", ctl)
	if err := n.newConsole(); err != nil {
		return nil, err
	}
	n.registerNodeMetrics()
	hs := map[string]http.Handler{
		ListenerDevice:  n.quorumGate(device),
		ListenerService: obs.HTTP("service", n.log, n.quorumGate(svcFront)),
		ListenerControl: obs.HTTP("control", n.log, control),
		ListenerConsole: n.console,
	}
	if n.peerMux != nil {
		if err := n.mountPeer(n.peerMux); err != nil {
			return nil, err
		}
		n.peerMux.Handle("/", notFound)
		hs[ListenerPeer] = n.peerMux
	}
	return hs, nil
}

// newConsole makes the web console (internal/console) over the node's
// own control-plane code; mountRegion must have made the failover manager.
func (n *Node) newConsole() error {
	c, err := console.New(console.Config{
		Instances: console.FromManager(n.instances, n.store), Enrollments: n.enrollments, Catalog: n.catalog,
		OperatorToken: n.token, RegionName: n.cfg.Region, Region: n.region, DR: n.failover,
		RegionConsoles: n.cfg.ConsoleURLs,
		Replication: func(ctx context.Context) ([]model.ReplStatus, []model.ReplState, error) {
			return replicate.Report(ctx, n.store)
		},
		Log: n.log.With("component", "console"),
	})
	if err != nil {
		return err
	}
	n.console = c
	return nil
}

// withMQTT makes the MQTT front end on the engine and returns the device
// listener's handler: MQTT over WebSocket for upgrades to the paths the
// SDKs use (mqttfront.IsWebSocketRequest), the HTTPS device API otherwise.
func (n *Node) withMQTT(device http.Handler, dev engine.Device) (http.Handler, error) {
	m, err := mqttfront.New(mqttfront.Config{Engine: dev, TLS: pki.ServerTLS(n.getCert),
		Log: n.log.With("component", "mqttfront")})
	if err != nil {
		return nil, err
	}
	n.mqtt = m
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mqttfront.IsWebSocketRequest(r) {
			m.ServeWebSocket(w, r)
			return
		}
		device.ServeHTTP(w, r)
	}), nil
}

// outboundTLS is the client TLS of calls to linked hubs and webhooks: the
// system roots plus the local CA (which signs the dev hub simulator).
func (n *Node) outboundTLS() *tls.Config {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if n.ca != nil {
		pool.AddCert(n.ca.Cert)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// serviceDomainWithPort is the service domain plus ":port" when the service
// listener is not on 443, as tenants must write it in connection strings.
func (n *Node) serviceDomainWithPort() string {
	_, port, _ := net.SplitHostPort(n.addrs[ListenerService])
	if port == "" {
		_, port, _ = net.SplitHostPort(n.cfg.ServiceAddr)
	}
	if port == "" || port == "443" || port == "0" {
		return n.cfg.ServiceDomain
	}
	return n.cfg.ServiceDomain + ":" + port
}

// publicDeviceHost is the device endpoint host[:port] reported to tenants.
func (n *Node) publicDeviceHost() string {
	if n.cfg.PublicDeviceHost != "" {
		return n.cfg.PublicDeviceHost
	}
	host := "localhost"
	if len(n.cfg.HostNames) > 0 {
		host = n.cfg.HostNames[0]
	}
	_, port, _ := net.SplitHostPort(n.addrs[ListenerDevice])
	if port == "" || port == "443" {
		return host
	}
	return host + ":" + port
}

// mountOps adds health, readiness and metrics endpoints (no auth: they
// carry no tenant data).
func (n *Node) mountOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", promhttp.Handler())
	// Profiles for operators, behind the operator token.
	mux.Handle("/debug/pprof/", n.requireToken(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", n.requireToken(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/trace", n.requireToken(http.HandlerFunc(pprof.Trace)))
}

// requireToken lets through requests carrying the operator token.
func (n *Node) requireToken(h http.Handler) http.Handler {
	want := []byte("Bearer " + n.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			apierr.Write(w, r, n.log, apierr.New(apierr.CodeUnauthorized, "The operator token is missing or wrong."))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// registerNodeMetrics exports the node's store readiness and its region's
// zone redundancy (obs.NodeCollector) until Close.
func (n *Node) registerNodeMetrics() {
	c := obs.NewNodeCollector(obs.NodeState{Node: n.cfg.Name, Region: n.cfg.Region, Zone: n.cfg.Zone,
		Ready: func() bool { ok, _ := n.store.Ready(); return ok },
		ZoneRedundancy: func() (bool, int) {
			red, zones, _ := n.region.ZoneRedundancy()
			return red, len(zones)
		},
		LiveNodes: n.region.Nodes,
	})
	if err := prometheus.Register(c); err != nil {
		n.log.Warn("node metrics not exported", "err", err)
		return
	}
	n.nodeMetrics = c
}
