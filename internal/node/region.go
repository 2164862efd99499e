package node

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/internal/store"
)

// Region wiring: the node's registry entry, the region API on the control
// listener, readiness and the quorum gate of the tenant-facing listeners
// (docs/zones.md).

// newRegion creates the node's view of its region; Start registers it.
func (n *Node) newRegion() error {
	r, err := region.New(region.Config{Store: n.store, Catalog: n.catalog, Self: n.selfEntry(),
		Log: n.log.With("component", "region")})
	if err != nil {
		return err
	}
	n.region = r
	return nil
}

// selfEntry is the node's registry entry.
func (n *Node) selfEntry() region.Node {
	e := region.Node{Name: n.cfg.Name, Region: n.cfg.Region, Zone: n.cfg.Zone, Version: version(),
		Endpoints: region.Endpoints{
			Device:  n.publicDeviceHost(),
			MQTT:    n.hostPort(n.addrs["mqtt"]),
			Service: n.url(ListenerService),
			Control: n.url(ListenerControl),
			Console: n.url(ListenerConsole),
		}}
	if len(n.cfg.EtcdEndpoints) == 0 {
		e.Endpoints.EtcdClient = "http://" + n.cfg.EtcdClientAddr
		e.Endpoints.EtcdPeer = "http://" + n.cfg.EtcdPeerAddr
	}
	return e
}

// url is the https URL of a listener, by the node's first host name.
func (n *Node) url(listener string) string {
	if hp := n.hostPort(n.addrs[listener]); hp != "" {
		return "https://" + hp
	}
	return ""
}

// hostPort is addr's port behind the node's first host name (localhost
// by default); "" for an empty addr.
func (n *Node) hostPort(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return ""
	}
	host := "localhost"
	if len(n.cfg.HostNames) > 0 {
		host = n.cfg.HostNames[0]
	}
	return net.JoinHostPort(host, port)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// watchMember reports on Err an embedded member that stops while the node
// runs (removed from the region with `region member remove`, or failed):
// the node can no longer serve, and `opendps serve` exits.
func (n *Node) watchMember() {
	stopped := n.store.MemberStopped()
	if stopped == nil {
		return
	}
	go func() {
		<-stopped
		if n.store.Closed() {
			return
		}
		select {
		case n.errc <- errors.New("node: the embedded etcd member stopped (removed from the region, or failed)"):
		default:
		}
	}()
}

// mountRegion serves the region API (internal/regionapi), operator token
// required.
func (n *Node) mountRegion(mux *http.ServeMux) error {
	if err := n.newFailover(); err != nil {
		return err
	}
	h, err := regionapi.New(regionapi.Config{Region: n.region, DR: n.failover, Replication: n.replication,
		Log: n.log.With("component", "regionapi")})
	if err != nil {
		return err
	}
	mux.Handle(regionapi.PathStatus, n.requireToken(h))
	mux.Handle(regionapi.PathStatus+"/", n.requireToken(h))
	return nil
}

// readyz answers 200 when a linearizable read through the quorum succeeds
// within store.QuorumCheckTimeout (the member reaches a quorum and has
// caught up), else 503 with the reason: a load balancer stops sending
// requests to a node cut off from its region.
func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), store.QuorumCheckTimeout)
	defer cancel()
	if err := n.store.CheckQuorum(ctx); err != nil {
		http.Error(w, "not ready: "+strings.TrimSpace(err.Error()), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// quorumGate answers 503 with Retry-After at once while the node cannot
// reach its storage quorum (store.Ready: the local member knows no leader,
// or has not caught up since it lost it), rather than letting requests wait
// for storage deadlines. A client retries, or a load balancer sends it to
// another node.
func (n *Node) quorumGate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, reason := n.store.Ready(); !ok {
			e := apierr.New(apierr.CodeUnavailable, "This node cannot reach the quorum of its region right now; retry, or use another node.")
			e.Header = http.Header{"Retry-After": []string{"1"}}
			n.log.Debug("request refused: no quorum", "reason", reason) // no path: it names scopes and devices (docs/dr.md)
			apierr.Write(w, r, nil, e)
			return
		}
		h.ServeHTTP(w, r)
	})
}
