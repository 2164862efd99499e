package peer

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/pki"
)

func serve(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: cfg.ServerTLS(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from "+RegionOf(r))
	})}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func TestMutualTLSNamesRegions(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other")
	cert := func(ca *pki.CA, region string) Config {
		c, err := ca.IssueRegion(RegionURI(region), []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return Config{Region: region, Certificate: c, Roots: ca.CertPool()}
	}
	ne := cert(ca, "northeurope")
	neURL := serve(t, ne)

	we := cert(ca, "westeurope")
	we.Peers = map[string]string{"northeurope": neURL, "brazilsouth": neURL}
	cl, err := NewClient(we)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	resp, err := cl.Do(ctx, "northeurope", "GET", PathPrefix+"x", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from westeurope" {
		t.Errorf("server saw %q, want the calling region", b)
	}
	// The server at neURL is northeurope: a client that expects brazilsouth refuses it.
	if _, err := cl.Do(ctx, "brazilsouth", "GET", PathPrefix+"x", nil, nil); err == nil {
		t.Error("a server of another region was accepted")
	}
	if _, err := cl.Do(ctx, "southeastasia", "GET", PathPrefix+"x", nil, nil); err == nil {
		t.Error("an unknown region was called")
	}
	// A client of another CA is refused by the server.
	rogue := cert(other, "westeurope")
	rogue.Roots = ca.CertPool()
	rogue.Peers = map[string]string{"northeurope": neURL}
	rc, _ := NewClient(rogue)
	if resp, err := rc.Do(ctx, "northeurope", "GET", PathPrefix+"x", nil, nil); err == nil {
		resp.Body.Close()
		t.Error("a client certificate from another CA was accepted")
	}
	// A plain TLS client without certificate is refused.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}}
	if resp, err := plain.Get(neURL + PathPrefix + "x"); err == nil {
		resp.Body.Close()
		t.Error("a client without certificate was accepted")
	}
}
