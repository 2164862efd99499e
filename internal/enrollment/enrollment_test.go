package enrollment_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
)

func TestMain(m *testing.M) { enrollmenttest.Main(m) }

// setup returns a service over the shared store and a fresh instance.
func setup(t *testing.T) (*enrollment.Service, *enrollmenttest.Instance) {
	t.Helper()
	st := enrollmenttest.Store(t)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 60 {
		name = name[:60]
	}
	return enrollment.New(st), enrollmenttest.NewInstance(t, st, name)
}

func symEnrollment(id string) *model.IndividualEnrollment {
	return &model.IndividualEnrollment{RegistrationID: id, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: "symmetricKey"}}}
}

// selfSigned returns the PEM of a new self-signed CA certificate.
func selfSigned(t *testing.T, cn string) string {
	t.Helper()
	ca, err := pki.NewCA(cn)
	if err != nil {
		t.Fatal(err)
	}
	return string(ca.CertPEM)
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"dev-01", true}, {"A.b_c:d-", true}, {"x", true}, {strings.Repeat("a", 128), true},
		{"", false}, {strings.Repeat("a", 129), false}, {"ends.", false}, {"ends_", false}, {"ends:", false},
		{"has space", false}, {"slash/x", false}, {"ünicode", false}, {"pct%41", false},
	}
	for _, tt := range tests {
		err := enrollment.ValidateID("registrationId", tt.id)
		if got := err == nil; got != tt.want {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.want)
		}
		if err != nil && !errors.Is(err, enrollment.ErrInvalid) {
			t.Errorf("ValidateID(%q) error %v is not ErrInvalid", tt.id, err)
		}
	}
}

func TestValidateKeyAndGenerate(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		key  string
		want bool
	}{
		{b64(16), true}, {b64(32), true}, {b64(64), true},
		{b64(15), false}, {b64(65), false}, {"not base64!", false}, {"", false}, {b64(32)[:10], false},
	}
	for _, tt := range tests {
		if got := enrollment.ValidateKey("k", tt.key) == nil; got != tt.want {
			t.Errorf("ValidateKey(%q) ok = %v, want %v", tt.key, got, tt.want)
		}
	}
	k := enrollment.GenerateKey()
	if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 64 {
		t.Errorf("GenerateKey() = %q (%d bytes, %v), want 64 bytes", k, len(b), err)
	}
	if k == enrollment.GenerateKey() {
		t.Error("GenerateKey returned the same key twice")
	}
}

func TestEtagMatches(t *testing.T) {
	const cur = `"e17aae9d-bfbd-422f-a30d-af7077a81601"`
	tests := []struct {
		ifMatch string
		want    bool
	}{
		{cur, true}, {"e17aae9d-bfbd-422f-a30d-af7077a81601", true}, {`W/` + cur, true},
		{"*", true}, {`"other", ` + cur, true}, {`E17AAE9D-BFBD-422F-A30D-AF7077A81601`, true},
		{`"other"`, false}, {"", false}, {`""`, false},
	}
	for _, tt := range tests {
		if got := enrollment.EtagMatches(tt.ifMatch, cur); got != tt.want {
			t.Errorf("EtagMatches(%q) = %v, want %v", tt.ifMatch, got, tt.want)
		}
	}
	if a, b := enrollment.NewEtag(), enrollment.NewEtag(); a == b || !strings.HasPrefix(a, `"`) || !strings.HasSuffix(a, `"`) {
		t.Errorf("NewEtag() = %s, %s", a, b)
	}
}

func TestEnrollmentLifecycle(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	in1 := symEnrollment("Dev-1")
	created, err := svc.PutEnrollment(ctx, in.Name, in1, "")
	if err != nil {
		t.Fatal(err)
	}
	if in1.Attestation.SymmetricKey != nil {
		t.Error("PutEnrollment modified its input")
	}
	sk := created.Attestation.SymmetricKey
	if sk == nil || enrollment.ValidateKey("p", sk.PrimaryKey) != nil || enrollment.ValidateKey("s", sk.SecondaryKey) != nil {
		t.Fatalf("generated keys = %+v", sk)
	}
	if created.ProvisioningStatus != "enabled" || created.Etag == "" || created.CreatedDateTimeUTC == nil || created.Capabilities == nil {
		t.Errorf("defaults not filled: %+v", created)
	}
	got, err := svc.GetEnrollment(ctx, in.Name, "dev-1")
	if err != nil || got.RegistrationID != "Dev-1" || got.Etag != created.Etag {
		t.Fatalf("GetEnrollment = %+v, %v", got, err)
	}

	// An update without keys keeps them, keeps createdDateTimeUtc, and
	// changes the etag.
	upd := symEnrollment("dev-1")
	upd.ProvisioningStatus = "Disabled"
	updated, err := svc.PutEnrollment(ctx, in.Name, upd, created.Etag)
	if err != nil {
		t.Fatal(err)
	}
	if *updated.Attestation.SymmetricKey != *sk || updated.ProvisioningStatus != "disabled" {
		t.Errorf("update: keys %+v status %q", updated.Attestation.SymmetricKey, updated.ProvisioningStatus)
	}
	if !updated.CreatedDateTimeUTC.Equal(*created.CreatedDateTimeUTC) || updated.Etag == created.Etag {
		t.Errorf("update: created %v etag %s", updated.CreatedDateTimeUTC, updated.Etag)
	}

	// Stale If-Match, If-Match on a missing record.
	if _, err := svc.PutEnrollment(ctx, in.Name, upd, created.Etag); !errors.Is(err, enrollment.ErrPrecondition) {
		t.Errorf("PUT with stale etag: err = %v, want ErrPrecondition", err)
	}
	if _, err := svc.PutEnrollment(ctx, in.Name, symEnrollment("missing"), "*"); !errors.Is(err, enrollment.ErrPrecondition) {
		t.Errorf("PUT If-Match on missing: err = %v, want ErrPrecondition", err)
	}
	if err := svc.DeleteEnrollment(ctx, in.Name, "DEV-1", created.Etag); !errors.Is(err, enrollment.ErrPrecondition) {
		t.Errorf("DELETE with stale etag: err = %v, want ErrPrecondition", err)
	}
	if err := svc.DeleteEnrollment(ctx, in.Name, "DEV-1", updated.Etag); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetEnrollment(ctx, in.Name, "dev-1"); !errors.Is(err, enrollment.ErrNotFound) {
		t.Errorf("GET after delete: err = %v, want ErrNotFound", err)
	}
	if err := svc.DeleteEnrollment(ctx, in.Name, "dev-1", ""); !errors.Is(err, enrollment.ErrNotFound) {
		t.Errorf("second DELETE: err = %v, want ErrNotFound", err)
	}
	if _, err := svc.PutEnrollment(ctx, "no-such-instance", symEnrollment("x"), ""); !errors.Is(err, enrollment.ErrInstanceNotFound) {
		t.Errorf("unknown instance: err = %v, want ErrInstanceNotFound", err)
	}
}

func TestPutValidation(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	st := enrollmenttest.Store(t)
	pem := selfSigned(t, "x")
	type mod func(e *model.IndividualEnrollment)
	tests := []struct {
		name string
		mod  mod
	}{
		{"illegal id", func(e *model.IndividualEnrollment) { e.RegistrationID = "bad id" }},
		{"no attestation", func(e *model.IndividualEnrollment) { e.Attestation = nil }},
		{"type none", func(e *model.IndividualEnrollment) { e.Attestation.Type = "none" }},
		{"unknown type", func(e *model.IndividualEnrollment) { e.Attestation.Type = "password" }},
		{"bad key", func(e *model.IndividualEnrollment) {
			e.Attestation.SymmetricKey = &model.SymmetricKeyAttestation{PrimaryKey: "***"}
		}},
		{"short key", func(e *model.IndividualEnrollment) {
			e.Attestation.SymmetricKey = &model.SymmetricKeyAttestation{SecondaryKey: "c2hvcnQ="}
		}},
		{"bad status", func(e *model.IndividualEnrollment) { e.ProvisioningStatus = "paused" }},
		{"bad policy", func(e *model.IndividualEnrollment) { e.AllocationPolicy = "random" }},
		{"unlinked hub", func(e *model.IndividualEnrollment) { e.IoTHubs = []string{"other.azure-devices.net"} }},
		{"static two hubs", func(e *model.IndividualEnrollment) {
			e.AllocationPolicy, e.IoTHubs = "static", []string{enrollmenttest.Hub1, enrollmenttest.Hub2}
		}},
		{"static no hub", func(e *model.IndividualEnrollment) { e.AllocationPolicy = "static" }},
		{"custom no definition", func(e *model.IndividualEnrollment) { e.AllocationPolicy = "custom" }},
		{"custom bad url", func(e *model.IndividualEnrollment) {
			e.AllocationPolicy = "custom"
			e.CustomAllocationDefinition = &model.CustomAllocationDefinition{WebhookURL: "ftp://x", APIVersion: "2021-10-01"}
		}},
		{"custom no api version", func(e *model.IndividualEnrollment) {
			e.AllocationPolicy = "custom"
			e.CustomAllocationDefinition = &model.CustomAllocationDefinition{WebhookURL: "https://fn.example/api"}
		}},
		{"tags not object", func(e *model.IndividualEnrollment) { e.InitialTwin = &model.InitialTwin{Tags: []byte(`[1]`)} }},
		{"device info not object", func(e *model.IndividualEnrollment) { e.OptionalDeviceInformation = []byte(`"x"`) }},
		{"bad device id", func(e *model.IndividualEnrollment) { e.DeviceID = "a/b" }},
		{"tpm no ek", func(e *model.IndividualEnrollment) { e.Attestation.Type = "tpm" }},
		{"tpm bad ek", func(e *model.IndividualEnrollment) {
			e.Attestation = &model.AttestationMechanism{Type: "tpm", TPM: &model.TPMAttestation{EndorsementKey: "!!"}}
		}},
		{"x509 missing", func(e *model.IndividualEnrollment) { e.Attestation.Type = "x509" }},
		{"x509 unparsable", func(e *model.IndividualEnrollment) {
			e.Attestation = x509Att("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}},
		{"x509 garbage", func(e *model.IndividualEnrollment) { e.Attestation = x509Att("hello") }},
		{"x509 ca refs on individual", func(e *model.IndividualEnrollment) {
			e.Attestation = &model.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{
				CAReferences: &model.X509CAReferences{Primary: enrollmenttest.VerifiedCA}}}
		}},
		{"x509 signing on individual", func(e *model.IndividualEnrollment) {
			e.Attestation = x509Att(pem)
			e.Attestation.X509.SigningCertificates = e.Attestation.X509.ClientCertificates
		}},
	}
	before := enrollmenttest.Snapshot(t, st, in.Name)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := symEnrollment("dev-v")
			tt.mod(e)
			_, err := svc.PutEnrollment(ctx, in.Name, e, "")
			var ie *enrollment.InvalidError
			if !errors.As(err, &ie) || ie.Message == "" {
				t.Fatalf("err = %v, want *InvalidError", err)
			}
		})
	}
	if after := enrollmenttest.Snapshot(t, st, in.Name); !reflect.DeepEqual(before, after) {
		t.Error("a refused write changed the store")
	}
}

func x509Att(cert string) *model.AttestationMechanism {
	return &model.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{
		ClientCertificates: &model.X509Certificates{Primary: &model.X509CertificateWithInfo{Certificate: cert}}}}
}

func TestX509AndTPM(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	ca, _ := pki.NewCA("x509-dev")
	for name, text := range map[string]string{"pem": string(ca.CertPEM), "der": base64.StdEncoding.EncodeToString(ca.Cert.Raw)} {
		e := symEnrollment("x509-" + name)
		e.Attestation = x509Att(text)
		got, err := svc.PutEnrollment(ctx, in.Name, e, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		info := got.Attestation.X509.ClientCertificates.Primary.Info
		if info == nil || info.SHA256Thumbprint != pki.SHA256Thumbprint(ca.Cert) || !strings.Contains(info.SubjectName, "x509-dev") {
			t.Errorf("%s: info = %+v", name, info)
		}
		// Sending back the info only (as GET shows it) keeps the certificate.
		back := symEnrollment(e.RegistrationID)
		back.Attestation = &model.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{
			ClientCertificates: &model.X509Certificates{Primary: &model.X509CertificateWithInfo{Info: info}}}}
		again, err := svc.PutEnrollment(ctx, in.Name, back, "")
		if err != nil || again.Attestation.X509.ClientCertificates.Primary.Certificate == "" {
			t.Errorf("%s: round trip with info only: %v", name, err)
		}
	}
	tpm := symEnrollment("tpm-1")
	tpm.Attestation = &model.AttestationMechanism{Type: "TPM", TPM: &model.TPMAttestation{EndorsementKey: base64.StdEncoding.EncodeToString([]byte("ek-bytes"))}}
	if got, err := svc.PutEnrollment(ctx, in.Name, tpm, ""); err != nil || got.Attestation.Type != "tpm" {
		t.Fatalf("tpm: %+v %v", got, err)
	}
}

func TestGroups(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	group := func(id string, a *model.AttestationMechanism) *model.EnrollmentGroup {
		return &model.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: model.EnrollmentCommon{Attestation: a}}
	}
	caRef := func(name string) *model.AttestationMechanism {
		return &model.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{CAReferences: &model.X509CAReferences{Primary: name}}}
	}
	signing := &model.AttestationMechanism{Type: "x509", X509: &model.X509Attestation{SigningCertificates: &model.X509Certificates{
		Primary: &model.X509CertificateWithInfo{Certificate: selfSigned(t, "signer")}}}}
	ok := []*model.EnrollmentGroup{
		group("g-sym", &model.AttestationMechanism{Type: "symmetricKey"}),
		group("g-ca", caRef(strings.ToUpper(enrollmenttest.VerifiedCA))),
		group("g-signing", signing),
	}
	for _, g := range ok {
		if _, err := svc.PutGroup(ctx, in.Name, g, ""); err != nil {
			t.Errorf("PutGroup(%s): %v", g.EnrollmentGroupID, err)
		}
	}
	bad := []*model.EnrollmentGroup{
		group("g-tpm", &model.AttestationMechanism{Type: "tpm", TPM: &model.TPMAttestation{EndorsementKey: "AAAA"}}),
		group("g-unverified", caRef(enrollmenttest.UnverifiedCA)),
		group("g-missing-ca", caRef("nope")),
		group("g-client", x509Att(selfSigned(t, "leaf"))),
	}
	for _, g := range bad {
		if _, err := svc.PutGroup(ctx, in.Name, g, ""); !errors.Is(err, enrollment.ErrInvalid) {
			t.Errorf("PutGroup(%s): err = %v, want ErrInvalid", g.EnrollmentGroupID, err)
		}
	}
	page, next, err := svc.ListGroups(ctx, in.Name, "", 2)
	if err != nil || len(page) != 2 || next == "" {
		t.Fatalf("ListGroups page 1: %d items, next %q, %v", len(page), next, err)
	}
	page, next, err = svc.ListGroups(ctx, in.Name, next, 2)
	if err != nil || len(page) != 1 || next != "" {
		t.Fatalf("ListGroups page 2: %d items, next %q, %v", len(page), next, err)
	}
}

func TestBulk(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	items := []*model.IndividualEnrollment{symEnrollment("b-1"), symEnrollment("b-2"), symEnrollment("bad id"), nil}
	failed, err := svc.BulkEnrollments(ctx, in.Name, "CREATE", items)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[0].ID != "bad id" || !errors.Is(failed[0].Err, enrollment.ErrInvalid) {
		t.Fatalf("create: failed = %+v", failed)
	}
	failed, _ = svc.BulkEnrollments(ctx, in.Name, "create", []*model.IndividualEnrollment{symEnrollment("B-1"), symEnrollment("b-3")})
	if len(failed) != 1 || !errors.Is(failed[0].Err, enrollment.ErrExists) {
		t.Fatalf("create existing: failed = %+v", failed)
	}
	cur, _ := svc.GetEnrollment(ctx, in.Name, "b-1")
	stale := symEnrollment("b-1")
	stale.Etag = `"stale"`
	fresh := symEnrollment("b-2")
	failed, _ = svc.BulkEnrollments(ctx, in.Name, "updateIfMatchEtag", []*model.IndividualEnrollment{stale, fresh})
	if len(failed) != 2 || !errors.Is(failed[0].Err, enrollment.ErrPrecondition) || !errors.Is(failed[1].Err, enrollment.ErrPrecondition) {
		t.Fatalf("updateIfMatchETag: failed = %+v", failed)
	}
	stale.Etag = cur.Etag
	if failed, _ = svc.BulkEnrollments(ctx, in.Name, "updateIfMatchETag", []*model.IndividualEnrollment{stale}); len(failed) != 0 {
		t.Fatalf("updateIfMatchETag with current etag: %+v", failed)
	}
	failed, _ = svc.BulkEnrollments(ctx, in.Name, "delete", []*model.IndividualEnrollment{symEnrollment("b-1"), symEnrollment("b-404")})
	if len(failed) != 1 || failed[0].ID != "b-404" || !errors.Is(failed[0].Err, enrollment.ErrNotFound) {
		t.Fatalf("delete: failed = %+v", failed)
	}
	if _, err := svc.GetEnrollment(ctx, in.Name, "b-1"); !errors.Is(err, enrollment.ErrNotFound) {
		t.Errorf("b-1 not deleted: %v", err)
	}
	var eleven []*model.IndividualEnrollment
	for i := range 11 {
		eleven = append(eleven, symEnrollment(fmt.Sprintf("e-%d", i)))
	}
	for _, tc := range []struct {
		mode  string
		items []*model.IndividualEnrollment
	}{{"create", eleven}, {"create", nil}, {"upsert", items[:1]}} {
		if _, err := svc.BulkEnrollments(ctx, in.Name, tc.mode, tc.items); !errors.Is(err, enrollment.ErrInvalid) {
			t.Errorf("bulk %s with %d items: err = %v, want ErrInvalid", tc.mode, len(tc.items), err)
		}
	}
}

func TestListEnrollmentsPaging(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	for i := range 25 {
		if _, err := svc.PutEnrollment(ctx, in.Name, symEnrollment(fmt.Sprintf("Dev-%02d", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	after, pages := "", 0
	for {
		page, next, err := svc.ListEnrollments(ctx, in.Name, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range page {
			ids = append(ids, e.RegistrationID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if len(ids) != 25 || pages != 3 || ids[0] != "Dev-00" || ids[24] != "Dev-24" {
		t.Errorf("got %d ids in %d pages (%v), want 25 in 3", len(ids), pages, ids)
	}
}

func TestRegistrationsAndIndex(t *testing.T) {
	ctx := context.Background()
	svc, in := setup(t)
	put := func(id, group string) *model.Registration {
		t.Helper()
		r := &model.Registration{DeviceRegistrationState: model.DeviceRegistrationState{
			RegistrationID: id, Status: "assigned", AssignedHub: enrollmenttest.Hub1, DeviceID: id}, EnrollmentGroupID: group}
		out, err := svc.PutRegistration(ctx, in.Name, r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	groupIDs := func(group string) []string {
		t.Helper()
		page, _, err := svc.ListGroupRegistrations(ctx, in.Name, group, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range page {
			ids = append(ids, r.RegistrationID)
		}
		return ids
	}
	first := put("d1", "G1")
	put("d2", "g1")
	put("d3", "")
	if got := groupIDs("g1"); !reflect.DeepEqual(got, []string{"d1", "d2"}) {
		t.Errorf("g1 = %v", got)
	}
	moved := put("d1", "g2")
	if !moved.CreatedDateTimeUTC.Equal(*first.CreatedDateTimeUTC) || moved.Etag == first.Etag {
		t.Errorf("rewrite: created %v etag %s", moved.CreatedDateTimeUTC, moved.Etag)
	}
	if got := groupIDs("g1"); !reflect.DeepEqual(got, []string{"d2"}) {
		t.Errorf("g1 after move = %v", got)
	}
	if err := svc.DeleteRegistration(ctx, in.Name, "d1", first.Etag); !errors.Is(err, enrollment.ErrPrecondition) {
		t.Errorf("stale delete: %v", err)
	}
	if err := svc.DeleteRegistration(ctx, in.Name, "D1", moved.Etag); err != nil {
		t.Fatal(err)
	}
	if got := groupIDs("g2"); len(got) != 0 {
		t.Errorf("g2 after delete = %v", got)
	}
	n, _ := enrollmenttest.Store(t).Count(ctx, enrollmenttest.IndexPrefix(in.Name))
	if n != 1 {
		t.Errorf("%d index entries left, want 1 (d2)", n)
	}
	if _, err := svc.GetRegistration(ctx, in.Name, "d1"); !errors.Is(err, enrollment.ErrNotFound) {
		t.Errorf("GetRegistration after delete: %v", err)
	}
}
