package cluster_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestRegions runs two paired regions of one node each as processes and
// exercises what the disaster suite needs: each region its own etcd
// cluster, the instance in its region with disaster recovery, the peer
// link through the harness's relays (cut in both directions while both
// regions stay reachable, then mended), and a whole region killed and
// started again.
func TestRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two opendps processes")
	}
	rs := cluster.NewRegions(t, cluster.RegionsConfig{Regions: []string{"westeurope", "northeurope"}, Nodes: 1, Zones: []string{"1"}, LogLevel: "warn"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	we, ne := rs.Region("westeurope"), rs.Region("northeurope")

	// Two etcd clusters.
	sw, err := we.Status(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := ne.Status(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Header.ClusterId == sn.Header.ClusterId {
		t.Fatalf("both regions in etcd cluster %x", sw.Header.ClusterId)
	}

	// The instance, primary in westeurope, DR to northeurope.
	in := rs.Instance("drinstance")
	v, err := we.Control(0).GetInstance(ctx, "drinstance")
	if err != nil {
		t.Fatal(err)
	}
	if in.IDScope == "" || v.Properties.IDScope != in.IDScope || v.Properties.DisasterRecovery != "enabled" || v.Properties.SecondaryLocation != "northeurope" {
		t.Fatalf("instance drinstance: %+v (harness says %+v): want DR enabled to northeurope", v.Properties, in)
	}

	// The peer link, as westeurope's nodes dial it (their --peer URLs are
	// the harness's relays), with westeurope's region certificate.
	relays := we.Peers()["northeurope"]
	if relays == "" || strings.Contains(relays, ne.PeerURL(0)) {
		t.Fatalf("westeurope's peers %v: want relays, not northeurope's listener %s", we.Peers(), ne.PeerURL(0))
	}
	ca, err := pki.LoadOrCreateCA(filepath.Dir(rs.CAFile()))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueRegion(peer.RegionURI("westeurope"), []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := peer.NewClient(peer.Config{Region: "westeurope", Certificate: cert, Roots: ca.CertPool(), Peers: map[string]string{"northeurope": relays}})
	if err != nil {
		t.Fatal(err)
	}
	hello := func() error {
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := pc.Do(hctx, "northeurope", http.MethodGet, peer.PathPrefix+"hello", nil, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"region":"northeurope"`) {
			t.Fatalf("hello through the relay: %d %s", resp.StatusCode, b)
		}
		return nil
	}
	if err := hello(); err != nil {
		t.Fatalf("hello through the relay: %v", err)
	}
	if err := rs.CutLink("westeurope", "northeurope"); err != nil {
		t.Fatal(err)
	}
	if !rs.LinkCut("northeurope", "westeurope") {
		t.Error("LinkCut(northeurope, westeurope) = false after CutLink: the cut must go both ways")
	}
	if err := hello(); err == nil {
		t.Fatal("hello through a cut link succeeded")
	}
	for _, c := range []*cluster.Cluster{we, ne} {
		if err := c.Ready(ctx, 0); err != nil {
			t.Errorf("%s not reachable by clients while the link is cut: %v", c.Region(), err)
		}
	}
	if err := rs.MendLink("westeurope", "northeurope"); err != nil {
		t.Fatal(err)
	}
	if err := hello(); err != nil {
		t.Fatalf("hello after MendLink: %v", err)
	}

	// The front door: the instance's service API through it (to
	// westeurope), and its routes once westeurope is lost.
	fd, err := rs.StartFrontDoor()
	if err != nil {
		t.Fatal(err)
	}
	if r := fd.Status().Routes["service"]; r != "westeurope" {
		t.Fatalf("front door routes the service API to %q, want westeurope", r)
	}
	svcHost := "drinstance." + cluster.LocalEndpoint(fd.Addr("service"))
	svc, err := dpsclient.NewService("HostName="+svcHost+";SharedAccessKeyName="+in.KeyName+";SharedAccessKey="+in.Key, we.HTTPClient())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.QueryEnrollments(ctx, 1, ""); err != nil {
		t.Fatalf("service API through the front door: %v", err)
	}

	// A region lost, then back.
	if err := rs.KillRegion("westeurope"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); fd.Status().Routes["device"] != "northeurope"; {
		if time.Now().After(deadline) {
			t.Fatalf("front door routes %v 10s after westeurope was lost, want northeurope", fd.Status().Routes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if we.Running(0) {
		t.Fatal("westeurope still runs after KillRegion")
	}
	if err := ne.Ready(ctx, 0); err != nil {
		t.Errorf("northeurope with westeurope lost: %v", err)
	}
	if err := rs.StartRegion(ctx, "westeurope"); err != nil {
		t.Fatal(err)
	}
	if err := we.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := we.Control(0).GetInstance(ctx, "drinstance"); err != nil {
		t.Errorf("instance drinstance after westeurope came back: %v", err)
	}
}
