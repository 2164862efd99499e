package devenv

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/pkg/dpsclient"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestMultiRegion starts the four default regions of `opendps dev` with
// one zone each (in process), and checks connection.json, that every
// region is its own etcd cluster joined to the others by the peer link,
// that the default instance (DR to its pair) and the residency instance
// (no DR) exist in their regions, and that a restart on the same
// directory reuses everything.
func TestMultiRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four regions")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	opts := Options{DataDir: dir, LogLevel: "error", Zones: 1, Regions: DefaultRegions}
	d, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	conn, err := dpsclient.LoadConnection(d.ConnectionPath)
	if err != nil {
		t.Fatal(err)
	}

	// connection.json: regions with their pairs and listeners, nodes
	// with their region, both instances.
	// The catalog's pairs (Brazil South's pair is South Central US, whose
	// own pair is North Central US: Azure's one-way pair).
	wantRegions := map[string]string{"westeurope": "northeurope", "northeurope": "westeurope",
		"brazilsouth": "southcentralus", "southcentralus": "northcentralus"}
	if conn.Region != "westeurope" || len(conn.Regions) != 4 {
		t.Fatalf("connection.json region %q, regions %+v: want westeurope and four regions", conn.Region, conn.Regions)
	}
	for i, r := range conn.Regions {
		if r.Name != regionNames(DefaultRegions)[i] || wantRegions[r.Name] != r.Pair {
			t.Errorf("region %d = %s pair %s, want %s pair %s", i, r.Name, r.Pair, regionNames(DefaultRegions)[i], wantRegions[r.Name])
		}
		if len(r.ControlURLs) != 1 || len(r.PeerURLs) != 1 || len(r.DeviceEndpoints) != 1 {
			t.Errorf("region %s: control %v peer %v device %v: want one node each", r.Name, r.ControlURLs, r.PeerURLs, r.DeviceEndpoints)
		}
		if _, err := os.Stat(filepath.Join(dir, r.Name, "node1", "etcd")); err != nil {
			t.Errorf("region %s: no data in DATA-DIR/%s/node1: %v", r.Name, r.Name, err)
		}
	}
	if len(conn.Nodes) != 4 {
		t.Fatalf("connection.json nodes = %+v, want one per region", conn.Nodes)
	}
	for i, n := range conn.Nodes {
		if n.Region != conn.Regions[i].Name || n.PID != os.Getpid() || len(n.Command) != 0 {
			t.Errorf("node %d: %s in %q pid %d command %q: want region %s, this process, no command", i, n.Name, n.Region, n.PID, n.Command, conn.Regions[i].Name)
		}
	}
	if len(conn.Instances) != 2 {
		t.Fatalf("connection.json instances = %+v, want default and residency", conn.Instances)
	}
	def, res := conn.Instances[0], conn.Instances[1]
	if def.Name != DefaultInstance || def.Region != "westeurope" || def.DataResidency ||
		res.Name != ResidencyInstance || res.Region != "brazilsouth" || !res.DataResidency {
		t.Fatalf("instances = %+v, want default in westeurope and residency (data residency) in brazilsouth", conn.Instances)
	}
	if conn.IDScope != def.IDScope || conn.InstanceName != DefaultInstance || conn.ServiceConnectionString != def.ServiceConnectionString ||
		def.IDScope == "" || res.IDScope == "" || def.IDScope == res.IDScope {
		t.Errorf("top level scope %s instance %s; default %s residency %s: want the default instance's and two scopes",
			conn.IDScope, conn.InstanceName, def.IDScope, res.IDScope)
	}
	if conn.ControlEndpoint != conn.Regions[0].ControlURLs[0] {
		t.Errorf("control endpoint %s, want westeurope's %s", conn.ControlEndpoint, conn.Regions[0].ControlURLs[0])
	}
	if !strings.HasSuffix(res.ServiceEndpoint, ":"+port(d.Region("brazilsouth").configs[0].ServiceAddr)) {
		t.Errorf("residency service endpoint %s: want brazilsouth's own service listener", res.ServiceEndpoint)
	}
	if conn.FrontDoor == nil {
		t.Fatal("connection.json has no front door")
	}
	if fd := conn.FrontDoor; conn.DeviceEndpoint != fd.DeviceEndpoint || conn.MQTTEndpoint != fd.MQTTEndpoint ||
		conn.ServiceEndpoint != DefaultInstance+"."+fd.ServiceEndpoint || fd.PID != os.Getpid() {
		t.Errorf("top-level endpoints %s %s %s: want the front door's %+v (in this process)", conn.DeviceEndpoint, conn.MQTTEndpoint, conn.ServiceEndpoint, fd)
	}
	// The default instance's service API through the front door (TLS end
	// to end, to westeurope).
	func() {
		hc, err := dpsclient.HTTPClient(conn.CACertificate)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.CloseIdleConnections()
		svc, err := dpsclient.NewService(conn.ServiceConnectionString, hc)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.QueryEnrollments(ctx, 10, ""); err != nil {
			t.Errorf("service API through the front door: %v", err)
		}
	}()

	// Node configurations: no "*" hosting, peers = every other region.
	for _, r := range d.Regions {
		c := r.configs[0]
		if len(c.HostedRegions) != 0 || c.PeerAddr == "" || len(c.Peers) != 3 || c.Peers[r.Name] != "" {
			t.Errorf("%s config: hosted %v, peer addr %q, peers %v: want none hosted, a peer listener, the three other regions", r.Name, c.HostedRegions, c.PeerAddr, c.Peers)
		}
	}

	// Every region is its own etcd cluster.
	clusters := map[uint64]string{}
	members := map[uint64]string{}
	for _, n := range conn.Nodes {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{n.EtcdClientURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		ml, err := cli.MemberList(ctx)
		cli.Close()
		if err != nil {
			t.Fatalf("%s member list: %v", n.Region, err)
		}
		if other, ok := clusters[ml.Header.ClusterId]; ok {
			t.Errorf("%s and %s share etcd cluster %x", n.Region, other, ml.Header.ClusterId)
		}
		clusters[ml.Header.ClusterId] = n.Region
		if len(ml.Members) != 1 {
			t.Errorf("%s: %d members, want 1", n.Region, len(ml.Members))
		}
		for _, m := range ml.Members {
			if other, ok := members[m.ID]; ok {
				t.Errorf("member %x in %s and %s", m.ID, n.Region, other)
			}
			members[m.ID] = n.Region
		}
	}

	// The peer link joins the regions (mutual TLS, the region certificates
	// of the shared CA).
	for _, to := range []string{"northeurope", "brazilsouth"} {
		resp, err := d.Region("westeurope").Nodes[0].Peer().Do(ctx, to, http.MethodGet, peer.PathPrefix+"hello", nil, nil)
		if err != nil {
			t.Fatalf("peer hello westeurope -> %s: %v", to, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"region":"`+to+`"`) || !strings.Contains(string(b), `"caller":"westeurope"`) {
			t.Errorf("peer hello westeurope -> %s: %d %s", to, resp.StatusCode, b)
		}
	}

	// Each instance in its region, with the right disaster recovery.
	checkInstances := func() {
		t.Helper()
		hc, err := dpsclient.HTTPClient(conn.CACertificate)
		if err != nil {
			t.Fatal(err)
		}
		defer hc.CloseIdleConnections()
		for _, want := range []struct {
			name, region, dr, secondary string
			residency                   bool
			scope                       string
		}{
			{DefaultInstance, "westeurope", "enabled", "northeurope", false, def.IDScope},
			{ResidencyInstance, "brazilsouth", "disabled", "", true, res.IDScope},
		} {
			ctl := dpsclient.NewControl(conn.RegionControl(want.region)[0], conn.OperatorToken, hc)
			v, err := ctl.GetInstance(ctx, want.name)
			if err != nil {
				t.Fatalf("%s in %s: %v", want.name, want.region, err)
			}
			p := v.Properties
			if v.Location != want.region || p.DisasterRecovery != want.dr || p.SecondaryLocation != want.secondary ||
				p.EnableDataResidency != want.residency || p.IDScope != want.scope || len(p.IotHubs) != len(HubNames) {
				t.Errorf("%s in %s: location %s, DR %s to %q, residency %v, scope %s, %d hubs; want DR %s to %q, residency %v, scope %s, %d hubs",
					want.name, want.region, v.Location, p.DisasterRecovery, p.SecondaryLocation, p.EnableDataResidency, p.IDScope, len(p.IotHubs),
					want.dr, want.secondary, want.residency, want.scope, len(HubNames))
			}
		}
	}
	checkInstances()

	// Restart on the same directory: same ports, same instances.
	d.Close()
	closed = true
	d2, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer d2.Close()
	conn2, err := dpsclient.LoadConnection(d2.ConnectionPath)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(conn.Regions, conn2.Regions, func(a, b dpsclient.RegionInfo) bool {
		return slices.Equal(a.ControlURLs, b.ControlURLs) && slices.Equal(a.PeerURLs, b.PeerURLs) && slices.Equal(a.DeviceEndpoints, b.DeviceEndpoints)
	}) || !slices.Equal(conn.Instances, conn2.Instances) || conn.OperatorToken != conn2.OperatorToken ||
		conn2.FrontDoor == nil || conn2.DeviceEndpoint != conn.DeviceEndpoint || conn2.ServiceEndpoint != conn.ServiceEndpoint {
		t.Errorf("after restart:\n regions %+v\n instances %+v\nwant\n regions %+v\n instances %+v", conn2.Regions, conn2.Instances, conn.Regions, conn.Instances)
	}
	checkInstances()
}

// TestParseRegions covers the --regions syntax.
func TestParseRegions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []RegionGroup
		err  bool
	}{
		{"", DefaultRegions, false},
		{"1", []RegionGroup{{"westeurope"}}, false},
		{"2", []RegionGroup{{"westeurope", "northeurope"}}, false},
		{"3", []RegionGroup{{"westeurope", "northeurope"}, {"brazilsouth"}}, false},
		{"4", DefaultRegions, false},
		{"5", nil, true},
		{"0", nil, true},
		{"westeurope:northeurope,brazilsouth:southcentralus", DefaultRegions, false},
		{"West Europe:North Europe", []RegionGroup{{"westeurope", "northeurope"}}, false},
		{"eastus", []RegionGroup{{"eastus"}}, false},
		{"westeurope:westeurope", nil, true},
		{"westeurope:nowhere", nil, true},
		{"westeurope,", nil, true},
	} {
		got, err := ParseRegions(tc.in)
		if (err != nil) != tc.err || !slices.EqualFunc(got, tc.want, func(a, b RegionGroup) bool { return slices.Equal(a, b) }) {
			t.Errorf("ParseRegions(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestFormatRegions: --regions' default (FormatRegions of DefaultRegions)
// parses back to DefaultRegions.
func TestFormatRegions(t *testing.T) {
	s := FormatRegions(DefaultRegions)
	if s != "westeurope:northeurope,brazilsouth:southcentralus" {
		t.Errorf("FormatRegions = %q", s)
	}
	got, err := ParseRegions(s)
	if err != nil || !slices.EqualFunc(got, DefaultRegions, slices.Equal) {
		t.Errorf("ParseRegions(FormatRegions(DefaultRegions)) = %v, %v", got, err)
	}
}
