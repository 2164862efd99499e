package node

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// linkedRegions is two single-node regions, westeurope (a) and
// northeurope (b), linked by the peer link and sharing one CA.
type linkedRegions struct {
	a, b       *Node
	caFile     string       // the CA's certificate
	hc         *http.Client // trusts the CA
	ctlA, ctlB *dpsclient.Control
}

// startLinkedRegions starts the two regions under a new temporary
// directory; edit (nil: none) changes each node's Config before it starts.
// The nodes stop when the test ends.
func startLinkedRegions(t *testing.T, edit func(*Config)) linkedRegions {
	t.Helper()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	peerA, peerB := freeAddr(t), freeAddr(t)
	mk := func(region, sub, peerAddr, other, otherAddr string) Config {
		c := testConfig(t, filepath.Join(dir, sub))
		c.Region, c.CADir, c.PeerAddr = region, caDir, peerAddr
		c.Peers = map[string]string{other: "https://" + otherAddr}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	l := linkedRegions{caFile: filepath.Join(caDir, pki.CAFile)}
	l.a = startNode(t, mk("westeurope", "a", peerA, "northeurope", peerB))
	l.b = startNode(t, mk("northeurope", "b", peerB, "westeurope", peerA))
	hc, err := dpsclient.HTTPClient(l.caFile)
	if err != nil {
		t.Fatal(err)
	}
	l.hc = hc
	l.ctlA = dpsclient.NewControl("https://"+l.a.Addr(ListenerControl), l.a.OperatorToken(), hc)
	l.ctlB = dpsclient.NewControl("https://"+l.b.Addr(ListenerControl), l.b.OperatorToken(), hc)
	return l
}
