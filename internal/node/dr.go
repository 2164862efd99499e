package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/forward"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/regionapi"
	"github.com/opendps/opendps/internal/replicate"
)

// Disaster recovery wiring (docs/dr-design.md): the peer link between
// regions and what travels over it.

// regionCertTTL is the lifetime of a region certificate issued by the
// local CA (dev deployments; production brings its own, --peer-cert).
const regionCertTTL = 5 * 365 * 24 * time.Hour

// setupPeer prepares the peer link when the node has one (PeerAddr).
func (n *Node) setupPeer() error {
	if n.cfg.PeerAddr == "" {
		return nil
	}
	pc := peer.Config{Region: n.cfg.Region, Peers: n.cfg.Peers}
	var err error
	if n.cfg.PeerCertFile != "" {
		if pc.Certificate, err = tls.LoadX509KeyPair(n.cfg.PeerCertFile, n.cfg.PeerKeyFile); err != nil {
			return fmt.Errorf("node: peer certificate: %w", err)
		}
	} else {
		if n.ca == nil {
			return fmt.Errorf("node: the peer link needs --peer-cert and --peer-key with --tls-cert")
		}
		names := append([]string{"localhost", "127.0.0.1"}, n.cfg.HostNames...)
		if pc.Certificate, err = n.ca.IssueRegion(peer.RegionURI(n.cfg.Region), names, regionCertTTL); err != nil {
			return err
		}
	}
	if n.cfg.PeerCAFile != "" {
		b, err := os.ReadFile(n.cfg.PeerCAFile)
		if err != nil {
			return fmt.Errorf("node: peer CA: %w", err)
		}
		pc.Roots = x509.NewCertPool()
		if !pc.Roots.AppendCertsFromPEM(b) {
			return fmt.Errorf("node: peer CA %s holds no PEM certificate", n.cfg.PeerCAFile)
		}
	} else if n.ca != nil {
		pc.Roots = n.ca.CertPool()
	} else {
		return fmt.Errorf("node: the peer link needs --peer-ca with --tls-cert")
	}
	cl, err := peer.NewClient(pc)
	if err != nil {
		return err
	}
	n.peerCfg, n.peerClient, n.peerMux = &pc, cl, http.NewServeMux()
	return nil
}

// mountPeer adds the handlers of the peer listener. Every request on it
// carries a verified region certificate (peer.RegionOf).
func (n *Node) mountPeer(mux *http.ServeMux) error {
	mux.HandleFunc("GET "+peer.PathPrefix+"hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "{\"region\":%q,\"caller\":%q}\n", n.cfg.Region, peer.RegionOf(r))
	})
	if n.fwdDevice != nil {
		n.fwdDevice.Mount(mux)
		n.fwdService.Mount(mux)
	}
	if n.failover != nil {
		mux.Handle("POST "+dr.PathPeerFence, n.failover.FenceHandler(peer.RegionOf))
	}
	return n.startReplication(mux)
}

// startReplication mounts the replication sink (repl/{instance}/hello and
// apply), closes writes of DR-enabled primary instances until the start
// gate opens, and starts this node's candidate for the region's
// replicator (internal/replicate). Only with a peer link. A node that
// cannot replicate does not start: running with DR silently off would
// break the promise of every DR-enabled instance.
func (n *Node) startReplication(mux *http.ServeMux) error {
	log := n.log.With("component", "replicate")
	sink, err := replicate.NewSink(replicate.SinkConfig{Store: n.store, Region: n.cfg.Region,
		Demoter: nodeDemoter{n}, Log: log})
	if err != nil {
		return fmt.Errorf("node: replication sink: %w", err)
	}
	sink.Mount(mux)
	gate := replicate.NewStartGate(n.store, time.Now(), n.cfg.DRStartGrace)
	n.store.SetWriteGate(gate.Check)
	src, err := replicate.NewSource(replicate.Config{Store: n.store, Peer: n.peerClient, Demoter: nodeDemoter{n},
		Name: n.cfg.Name, Log: log})
	if err != nil {
		return fmt.Errorf("node: replicator: %w", err)
	}
	n.repl = src
	src.Start()
	return nil
}

// nodeDemoter demotes through the failover manager (internal/dr), looked
// up at call time.
type nodeDemoter struct{ n *Node }

func (d nodeDemoter) Demote(ctx context.Context, instance string, newDir model.DirEntry, ackedRev int64) error {
	if d.n.failover == nil {
		return errors.New("node: no failover manager to demote with")
	}
	return d.n.failover.Demote(ctx, instance, newDir, ackedRev)
}

// replication reports the region's replication for the region API.
func (n *Node) replication(ctx context.Context) (*regionapi.ReplicationList, error) {
	streams, incoming, err := replicate.Report(ctx, n.store)
	if err != nil {
		return nil, err
	}
	return &regionapi.ReplicationList{Streams: streams, Incoming: incoming}, nil
}

// Replicator returns this node's replicator candidate, nil without a peer
// link.
func (n *Node) Replicator() *replicate.Source { return n.repl }

// newFailover makes the failover manager (internal/dr). It exists without
// a peer link too: a failover then relies on the old region having been
// fenced through its own control API (or --force).
func (n *Node) newFailover() error {
	m, err := dr.New(dr.Config{Store: n.store, Region: n.cfg.Region, Catalog: n.catalog, Peer: n.peerClient,
		Cooldown: n.cfg.FailoverCooldown, Log: n.log.With("component", "dr")})
	if err != nil {
		return err
	}
	n.failover = m
	return nil
}

// Failover returns the failover manager (the replicator demotes through
// it), nil before the node's handlers are made.
func (n *Node) Failover() *dr.Manager { return n.failover }

// withForwarding wraps the engine and the service API handler so that
// requests for instances primary in another region are forwarded there
// (internal/forward). Without a peer link they are returned as they are.
func (n *Node) withForwarding(eng engine.Device, svc http.Handler) (engine.Device, http.Handler, error) {
	if n.peerClient == nil {
		return eng, svc, nil
	}
	cfg := forward.Config{Store: n.store, Peer: n.peerClient, Log: n.log.With("component", "forward")}
	var err error
	if n.fwdDevice, err = forward.New(eng, cfg); err != nil {
		return nil, nil, err
	}
	if n.fwdService, err = forward.NewService(svc, n.cfg.ServiceDomain, cfg); err != nil {
		return nil, nil, err
	}
	return n.fwdDevice, n.fwdService, nil
}

// Peer returns the client of the other regions, or nil without a peer link.
func (n *Node) Peer() *peer.Client { return n.peerClient }
