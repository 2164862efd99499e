package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestForwardAcrossRegions starts two single-node regions linked by the
// peer link and drives an instance primary in westeurope entirely through
// the northeurope node: its service API (reverse-proxied) and its device
// API (forwarded to the primary's engine).
func TestForwardAcrossRegions(t *testing.T) {
	l := startLinkedRegions(t, func(c *Config) { c.DRStartGrace = time.Millisecond })
	a, b, caFile, hc, ctl := l.a, l.b, l.caFile, l.hc, l.ctlA
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ps, err := ctl.CreateInstance(ctx, "fwd-e2e", dpsclient.InstanceSpec{Location: "westeurope"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ctl.GetKeys(ctx, "fwd-e2e", model.OwnerPolicy)
	if err != nil {
		t.Fatal(err)
	}
	_, portB, _ := net.SplitHostPort(b.Addr(ListenerService))
	svc, err := dpsclient.NewService("HostName=fwd-e2e.localhost:"+portB+";SharedAccessKeyName="+model.OwnerPolicy+
		";SharedAccessKey="+keys.PrimaryKey, hc)
	if err != nil {
		t.Fatal(err)
	}
	const devKey = "ZGV2aWNlLWtleS1vZi1md2QtZTJlLWRldmljZS0wMDE="
	enr := &dpsclient.IndividualEnrollment{RegistrationID: "fwd-dev-1"}
	enr.Attestation = &model.AttestationMechanism{Type: "symmetricKey",
		SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: devKey, SecondaryKey: devKey}}
	if _, err := svc.CreateOrUpdateEnrollment(ctx, enr); err != nil {
		t.Fatalf("create an enrollment through the northeurope node: %v", err)
	}
	var stored model.IndividualEnrollment
	if ok, err := a.store.Get(ctx, store.Key("fwd-e2e", store.KindEnrollment, "fwd-dev-1"), &stored); err != nil || !ok {
		t.Fatalf("the enrollment is not in westeurope's store: %v %v", ok, err)
	}

	res, err := dpsclient.Register(ctx, dpsclient.DeviceOptions{Endpoint: b.Addr(ListenerDevice), CAFile: caFile,
		IDScope: ps.Properties.IDScope, RegistrationID: "fwd-dev-1", SymmetricKey: devKey, PollInterval: 100 * time.Millisecond})
	// No hub is linked: westeurope's engine answers "failed" (a 401 or 404
	// would mean the request was not served by the primary).
	if err != nil && !errors.Is(err, dpsclient.ErrRegistrationFailed) {
		t.Fatalf("register through the northeurope node: %v", err)
	}
	if res == nil || res.State().RegistrationID != "fwd-dev-1" {
		t.Fatalf("register through the northeurope node: %+v", res)
	}
	t.Logf("registered through northeurope: %s, %d round trips (%v)", res.Status, res.RoundTrips, err)
	if _, err := b.store.Dir(ctx, "fwd-e2e"); err == nil {
		t.Log("northeurope holds a directory entry of the instance (replicated)")
	}
	// northeurope is the instance's secondary, so the replicator may copy
	// the record there; what it must not do is write one itself: any record
	// it holds is westeurope's, byte for byte.
	var weRec, neRec json.RawMessage
	key := store.Key("fwd-e2e", store.KindRegistration, "fwd-dev-1")
	if ok, err := a.store.Get(ctx, key, &weRec); err != nil || !ok {
		t.Errorf("westeurope holds no registration record (%v): the primary did not serve it", err)
	}
	if ok, _ := b.store.Get(ctx, key, &neRec); ok && string(neRec) != string(weRec) {
		t.Errorf("northeurope holds its own registration record %s, westeurope %s", neRec, weRec)
	}
	if _, err := dpsclient.Register(ctx, dpsclient.DeviceOptions{Endpoint: b.Addr(ListenerDevice), CAFile: caFile,
		IDScope: ps.Properties.IDScope, RegistrationID: "fwd-dev-1", SymmetricKey: keys.PrimaryKey}); !errors.Is(err, dpsclient.ErrDeviceUnauthorized) {
		t.Errorf("wrong key through the northeurope node: %v, want 401", err)
	}
}
