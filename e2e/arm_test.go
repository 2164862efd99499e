package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/internal/pki"
)

// TestARMClientConformance drives the control API of a dev deployment with
// the official ARM client, @azure/arm-deviceprovisioningservices
// (test/node/arm.test.js): a residency instance in Brazil South is created,
// read back, listed, its keys listed, a CA certificate verified by proof of
// possession, and deleted; a residency request in West Europe is refused.
// The long-running create and delete go through the SDK's own poller.
func TestARMClientConformance(t *testing.T) {
	nodetest.Dir(t)
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()

	ca, err := pki.NewCA("arm conformance root")
	if err != nil {
		t.Fatal(err)
	}
	// The harness issues the proof-of-possession certificate: node cannot
	// sign X.509 certificates with its standard library.
	mux := http.NewServeMux()
	mux.HandleFunc("POST /proof", func(w http.ResponseWriter, r *http.Request) {
		var args struct {
			Code string `json:"code"`
		}
		if err := json.NewDecoder(r.Body).Decode(&args); err != nil || args.Code == "" {
			writeHarness(w, http.StatusBadRequest, map[string]string{"error": "want {\"code\": \"...\"}"})
			return
		}
		c, err := ca.Issue([]string{args.Code}, time.Hour)
		if err != nil {
			writeHarness(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeHarness(w, http.StatusOK, map[string]string{"pem": string(pki.EncodePEM("CERTIFICATE", c.Leaf.Raw))})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	nodetest.Run(t, "arm.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS": e.conn.CACertificate,
		"ARM_ENDPOINT":        e.conn.ControlEndpoint,
		"OPERATOR_TOKEN":      e.conn.OperatorToken,
		"HARNESS_URL":         srv.URL + "/",
		"CA_CERT_PEM":         string(ca.CertPEM),
	})

	// What the SDK left behind: nothing in its subscription.
	ctl := *e.ctl
	ctl.Subscription = "00000000-0000-0000-0000-0000000000a1"
	list, err := ctl.ListInstances(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		t.Errorf("instance %s left behind by the ARM client", in.Name)
	}
}
