// Package enrollmenttest provides fixtures for tests of the enrollment
// logic and the service API: a real embedded store shared by the tests of
// a package, and instances with access policies, linked hubs and CA
// certificates, written as the control API writes them.
package enrollmenttest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/opendps/opendps/dpstest/storetest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Region is the region of the shared store; instances are primary there.
const Region = "westeurope"

// Names of the fixtures every instance gets.
const (
	ReadPolicy    = "enrollmentread"   // EnrollmentRead only
	RegReadPolicy = "registrationread" // RegistrationStatusRead only
	Hub1          = "hub1.azure-devices.net"
	Hub2          = "hub2.azure-devices.net"
	VerifiedCA    = "verified-ca"
	UnverifiedCA  = "unverified-ca"
)

// shared is the store of Store and Main.
var shared = storetest.Shared{Region: Region}

// Store returns an embedded store shared by the tests of the package,
// started on first use in a temporary directory. Call Main from TestMain
// to stop it and remove the directory.
func Store(t testing.TB) *store.Store {
	t.Helper()
	return shared.Store(t)
}

// Main runs the tests and then stops the shared store.
func Main(m *testing.M) { shared.Main(m) }

// Instance is a test instance and its fixtures.
type Instance struct {
	Name     string
	IDScope  string
	Model    *model.Instance
	OwnerKey string  // primary key of provisioningserviceowner
	CA       *pki.CA // the CA behind VerifiedCA and UnverifiedCA
}

// RandomKey returns base64 of 32 random bytes.
func RandomKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// NewInstance creates instance name in st with the owner policy, ReadPolicy
// and RegReadPolicy, linked hubs Hub1 and Hub2, and CA certificates
// VerifiedCA (verified) and UnverifiedCA.
func NewInstance(t testing.TB, st *store.Store, name string) *Instance {
	t.Helper()
	var r [4]byte
	rand.Read(r[:])
	scope := fmt.Sprintf("0ne%08X", binary.BigEndian.Uint32(r[:]))
	in := &Instance{Name: name, IDScope: scope, OwnerKey: RandomKey()}
	in.Model = &model.Instance{Name: name, IDScope: scope, Location: Region, State: "Active",
		AuthorizationPolicies: []model.AccessPolicy{
			{KeyName: model.OwnerPolicy, PrimaryKey: in.OwnerKey, SecondaryKey: RandomKey(), Rights: "ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite"},
			{KeyName: ReadPolicy, PrimaryKey: RandomKey(), SecondaryKey: RandomKey(), Rights: "EnrollmentRead"},
			{KeyName: RegReadPolicy, PrimaryKey: RandomKey(), SecondaryKey: RandomKey(), Rights: "RegistrationStatusRead"},
		}}
	dir := model.DirEntry{Name: name, IDScope: scope, Primary: Region, Role: model.RolePrimary, Epoch: 1}
	ctx := context.Background()
	if err := st.CreateInstance(ctx, dir, in.Model); err != nil {
		t.Fatalf("enrollmenttest: create instance %s: %v", name, err)
	}
	ca, err := pki.NewCA("enrollmenttest root")
	if err != nil {
		t.Fatal(err)
	}
	in.CA = ca
	err = st.Update(ctx, name, func(tx *store.Tx) error {
		for _, h := range []string{Hub1, Hub2} {
			if err := tx.Put(store.Key(name, store.KindHub, h), model.LinkedHub{Name: h, Location: Region, AllocationWeight: 1, ApplyAllocationPolicy: true}); err != nil {
				return err
			}
		}
		for _, c := range []model.Certificate{
			{Name: VerifiedCA, IsVerified: true}, {Name: UnverifiedCA, VerificationCode: "code"},
		} {
			c.Certificate = base64.StdEncoding.EncodeToString(ca.Cert.Raw)
			c.Subject, c.Thumbprint, c.Expiry = ca.Cert.Subject.CommonName, pki.SHA1Thumbprint(ca.Cert), ca.Cert.NotAfter
			if err := tx.Put(store.Key(name, store.KindCertificate, c.Name), c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("enrollmenttest: fixtures of %s: %v", name, err)
	}
	return in
}

// Snapshot returns every key and value under the instance prefix, to check
// that a failed request changed nothing.
func Snapshot(t testing.TB, st *store.Store, instance string) map[string]string {
	t.Helper()
	out := map[string]string{}
	resp, err := st.Client().Get(context.Background(), store.InstancePrefix(instance), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// IndexPrefix is the prefix of the reggrp index of instance.
func IndexPrefix(instance string) string {
	return store.KindPrefix(instance, store.KindGroupRegistration)
}
