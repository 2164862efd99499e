package serviceapi

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opendps/opendps/dpstest/nodetest"
	"github.com/opendps/opendps/dpstest/tlstest"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

// TestNodeServiceSDK drives the service API, served over TLS on
// 127.0.0.1, with the official Node service SDK (test/node/service.test.js).
func TestNodeServiceSDK(t *testing.T) {
	nodetest.Dir(t) // skip early without node
	e := newEnv(t)
	port, ca := tlstest.Serve(t, e.h)
	host := fmt.Sprintf("%s.localhost:%d", e.in.Name, port)
	cs := func(policy, key string) string {
		return fmt.Sprintf("HostName=%s;SharedAccessKeyName=%s;SharedAccessKey=%s", host, policy, key)
	}
	read := e.in.Model.Policy(enrollmenttest.ReadPolicy)
	device, err := ca.Issue([]string{"node-x509-01"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := pki.NewCA("node-signer")
	const regGroup, regCount = "node-reg-group", 5
	for i := range regCount {
		e.putRegistration(fmt.Sprintf("node-reg-%d", i), regGroup)
	}
	e.putRegistration("node-reg-single", "")
	before, _ := e.st.Count(context.Background(), enrollmenttest.IndexPrefix(e.in.Name))

	nodetest.Run(t, "service.test.js", map[string]string{
		"NODE_EXTRA_CA_CERTS":         nodetest.WriteCA(t, ca.CertPEM),
		"DPS_CONNECTION_STRING":       cs(model.OwnerPolicy, e.in.OwnerKey),
		"DPS_READ_CONNECTION_STRING":  cs(read.KeyName, read.PrimaryKey),
		"DPS_WRONG_CONNECTION_STRING": cs(model.OwnerPolicy, enrollmenttest.RandomKey()),
		"HUB1":                        enrollmenttest.Hub1,
		"X509_CERT_PEM":               string(pki.EncodePEM("CERTIFICATE", device.Leaf.Raw)),
		"X509_CERT_SHA256":            pki.SHA256Thumbprint(device.Leaf),
		"SIGNING_CERT_PEM":            string(signer.CertPEM),
		"CA_VERIFIED":                 enrollmenttest.VerifiedCA,
		"CA_UNVERIFIED":               enrollmenttest.UnverifiedCA,
		"REG_ID":                      "node-reg-single",
		"REG_GROUP":                   regGroup,
		"REG_GROUP_COUNT":             fmt.Sprint(regCount),
	})

	// The script cleans up after itself; the registrations of the group
	// and their index stay.
	if n, _ := e.st.Count(context.Background(), enrollmenttest.IndexPrefix(e.in.Name)); n != before {
		t.Errorf("reggrp index has %d entries, want %d", n, before)
	}
	page, _, err := e.svc.ListEnrollments(context.Background(), e.in.Name, "", 100)
	if err != nil || len(page) != 0 {
		t.Errorf("%d enrollments left behind (%v)", len(page), err)
	}
}
