package hubsim_test

import (
	"testing"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/pki"
)

// TestNodeRegistry drives the simulator with the official azure-iothub
// Registry (test/node/hubsim.test.js).
func TestNodeRegistry(t *testing.T) {
	nodetest.Dir(t) // skip early when the SDKs are not installed
	ca, err := pki.NewCA("hubsim node test CA")
	if err != nil {
		t.Fatal(err)
	}
	h := hubsim.NewHubConfig("hub1.localhost")
	sim, err := hubsim.New(hubsim.Config{Hubs: []hubsim.HubConfig{h}})
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := hubsim.TLSConfig(ca, sim)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hubsim.Listen(sim, "127.0.0.1:0", tlsConf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nodetest.Run(t, "hubsim.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS":   nodetest.WriteCA(t, ca.CertPEM),
		"HUB_CONNECTION_STRING": h.ConnectionStringPort(srv.Port()),
	})
	if n := len(sim.Devices(h.HostName)); n != 0 {
		t.Errorf("%d devices left after the node test deleted all of its own", n)
	}
}
