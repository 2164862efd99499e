package attest

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// Vectors from spec/dps-protocol.md §3.1.
const (
	vecScope   = "0ne00111111"
	vecRegID   = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
	vecGroup   = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
	vecDevice  = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
	vecOther   = "oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA=="
	vecSE      = 1700000000
	tokEncoded = "SharedAccessSignature sr=0ne00111111%2Fregistrations%2F" + vecRegID + "&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration"
	tokNode    = "SharedAccessSignature sr=0ne00111111/registrations/" + vecRegID + "&sig=%2F%2Beah6KDNGyh0EVauDWy8TsgRl239ASFozi9g%2BrShXg%3D&skn=registration&se=1700000000"
	tokC       = "SharedAccessSignature sr=0ne00111111%2fregistrations%2f" + vecRegID + "&sig=LwAx%2BRfQDq37RAHvptYP8R3382xvZ%2FBntAGlh8Wmu18%3D&se=1700000000"
)

var vecNow = time.Unix(vecSE-3600, 0)

func symGroup(id, primary, secondary string) *model.EnrollmentGroup {
	return &model.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: model.EnrollmentCommon{
		Etag:        `"` + id + `-1"`,
		Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey, SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
	}}
}

func symIndividual(id, primary, secondary string) *model.IndividualEnrollment {
	return &model.IndividualEnrollment{RegistrationID: id, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey, SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: primary, SecondaryKey: secondary}},
	}}
}

func disabled[T interface {
	Common() *model.EnrollmentCommon
}](e T) T {
	e.Common().ProvisioningStatus = model.StatusDisabled
	return e
}

// build signs a token for the vector registration id with key.
func build(t *testing.T, key, skn string, expiry time.Time) string {
	t.Helper()
	tok, err := sas.Build(vecScope+"%2Fregistrations%2F"+vecRegID, key, skn, expiry)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSymmetricKey(t *testing.T) {
	exp := time.Unix(vecSE, 0)
	x509Ind := &model.IndividualEnrollment{RegistrationID: vecRegID, EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: model.AttestationX509},
	}}
	tests := []struct {
		name      string
		src       MemEnrollments
		token     string
		regID     string // default vecRegID
		now       time.Time
		wantGroup string
		wantInd   bool
		wantSlot  Slot
		wantDis   bool
		wantErr   error
		wantMsg   string
	}{
		{name: "group %2F", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, vecOther)}}, token: tokEncoded, wantGroup: "g", wantSlot: Primary},
		{name: "group node unencoded sr", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokNode, wantGroup: "g", wantSlot: Primary},
		{name: "group C %2f no skn", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokC, wantGroup: "g", wantSlot: Primary},
		{name: "group secondary", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("a", vecOther, ""), symGroup("g", vecOther, vecGroup)}}, token: tokEncoded, wantGroup: "g", wantSlot: Secondary},
		{name: "skn case-insensitive", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: build(t, vecDevice, "Registration", exp), wantGroup: "g", wantSlot: Primary},
		{name: "skn other", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: build(t, vecDevice, "provisioningserviceowner", exp), wantErr: ErrKeyName, wantMsg: `token key name (skn) "provisioningserviceowner" is not "registration"`},
		{name: "expired", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, now: time.Unix(vecSE, 0).Add(6 * time.Minute), wantErr: ErrExpired, wantMsg: "token expired at 2023-11-14T22:13:20Z"},
		{name: "within skew", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, now: time.Unix(vecSE, 0).Add(4 * time.Minute), wantGroup: "g", wantSlot: Primary},
		{name: "audience other device", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, regID: "other-device", wantErr: ErrAudience, wantMsg: `token audience "0ne00111111/registrations/` + vecRegID + `" does not match "0ne00111111/registrations/other-device"`},
		{name: "group key itself refused", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: build(t, vecGroup, "registration", exp), wantErr: ErrNoEnrollment},
		{name: "no enrollment", src: MemEnrollments{}, token: tokEncoded, wantErr: ErrNoEnrollment, wantMsg: `token signature does not verify with the key of any enrollment for registration id "` + vecRegID + `"`},
		{name: "malformed", src: MemEnrollments{}, token: "SharedAccessSignature sr=x&se=1", wantErr: ErrMalformed, wantMsg: "malformed SAS token: sr, sig and se are required"},
		{name: "individual primary", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{symIndividual(vecRegID, vecDevice, "")}}, token: tokNode, wantInd: true, wantSlot: Primary},
		{name: "individual secondary", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{symIndividual(strings.ToUpper(vecRegID), vecOther, vecDevice)}}, token: tokC, wantInd: true, wantSlot: Secondary},
		{name: "individual decides over group", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{symIndividual(vecRegID, vecOther, "")}, GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, wantErr: ErrSignature, wantMsg: `token signature does not verify with the key of any enrollment for registration id "` + vecRegID + `"`},
		{name: "individual is x509", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{x509Ind}, GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, wantErr: ErrAttestationType, wantMsg: `the individual enrollment of registration id "` + vecRegID + `" uses X.509 attestation, not a symmetric key`},
		{name: "individual disabled", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{disabled(symIndividual(vecRegID, vecDevice, ""))}}, token: tokEncoded, wantInd: true, wantSlot: Primary, wantDis: true},
		{name: "disabled individual blocks group device", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{disabled(symIndividual(vecRegID, vecOther, ""))}, GroupList: []*model.EnrollmentGroup{symGroup("g", vecGroup, "")}}, token: tokEncoded, wantInd: true, wantGroup: "g", wantSlot: Primary, wantDis: true},
		{name: "disabled individual, no group", src: MemEnrollments{Individuals: []*model.IndividualEnrollment{disabled(symIndividual(vecRegID, vecOther, ""))}, GroupList: []*model.EnrollmentGroup{symGroup("g", vecOther, "")}}, token: tokEncoded, wantErr: ErrSignature},
		{name: "disabled group", src: MemEnrollments{GroupList: []*model.EnrollmentGroup{disabled(symGroup("g", vecGroup, ""))}}, token: tokEncoded, wantGroup: "g", wantSlot: Primary, wantDis: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cache := range []*KeyCache{nil, NewKeyCache(4)} {
				a := &Attestor{Cache: cache}
				req := SASRequest{Enrollments: &tt.src, IDScope: vecScope, RegistrationID: vecRegID, Token: tt.token, Now: vecNow}
				if tt.regID != "" {
					req.RegistrationID = tt.regID
				}
				if !tt.now.IsZero() {
					req.Now = tt.now
				}
				m, err := a.SymmetricKey(context.Background(), req)
				checkResult(t, m, err, tt.wantErr, tt.wantMsg, CodeSASUnauthorized)
				if err != nil {
					continue
				}
				if got := m.EnrollmentGroupID(); got != tt.wantGroup {
					t.Errorf("group = %q, want %q", got, tt.wantGroup)
				}
				if got := m.Individual != nil; got != tt.wantInd {
					t.Errorf("individual set = %v, want %v", got, tt.wantInd)
				}
				if m.KeyUsed != tt.wantSlot || m.Disabled != tt.wantDis || m.AttestationType != model.AttestationSymmetricKey {
					t.Errorf("match = {slot %v, disabled %v, type %q}, want {%v, %v, symmetricKey}", m.KeyUsed, m.Disabled, m.AttestationType, tt.wantSlot, tt.wantDis)
				}
				if (m.Err() != nil) != tt.wantDis || (tt.wantDis && !errors.Is(m.Err(), ErrDisabled)) {
					t.Errorf("Err() = %v", m.Err())
				}
			}
		})
	}
}

// checkResult checks an attestation error against the wanted sentinel,
// message and code.
func checkResult(t *testing.T, m *Match, err, wantErr error, wantMsg string, code int) {
	t.Helper()
	if wantErr == nil {
		if err != nil || m == nil {
			t.Fatalf("got %v, %v; want a match", m, err)
		}
		return
	}
	var ae *Error
	if !errors.As(err, &ae) || m != nil {
		t.Fatalf("got %v, %v; want *Error", m, err)
	}
	if !errors.Is(err, wantErr) || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error %v is not %v", err, wantErr)
	}
	if ae.Code != code {
		t.Errorf("code = %d, want %d", ae.Code, code)
	}
	if wantMsg != "" && ae.Message != wantMsg {
		t.Errorf("message = %q\nwant      %q", ae.Message, wantMsg)
	}
}

func TestSymmetricKeySourceError(t *testing.T) {
	boom := errors.New("store down")
	_, err := (&Attestor{}).SymmetricKey(context.Background(), SASRequest{
		Enrollments: &MemEnrollments{Err: boom}, IDScope: vecScope, RegistrationID: vecRegID, Token: tokEncoded, Now: vecNow,
	})
	var ae *Error
	if !errors.Is(err, boom) || errors.As(err, &ae) {
		t.Errorf("err = %v, want the store error, not a refusal", err)
	}
}

func TestMacerMatchesSAS(t *testing.T) {
	tok, err := sas.Parse(tokEncoded)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ group, id string }{
		{vecGroup, vecRegID}, {vecOther, "breakroom499-contoso-tstrsd-007"},
		{base64.StdEncoding.EncodeToString(make([]byte, 200)), "long-key"},
		{base64.StdEncoding.EncodeToString([]byte("short")), "short-key"},
	} {
		m := newMacer(tt.id, tok)
		var raw [32]byte
		if !m.derive(&raw, tt.group) {
			t.Fatalf("derive(%s) failed", tt.id)
		}
		want, _ := sas.DeriveKey(tt.group, tt.id)
		if got := base64.StdEncoding.EncodeToString(raw[:]); got != want {
			t.Errorf("derive(%s) = %s, want %s", tt.id, got, want)
		}
		key, _ := base64.StdEncoding.DecodeString(tt.group)
		m.mac(key, m.msg)
		if want := sas.Sign(key, tok.ResourceRaw, tok.ExpiryRaw); string(m.sum[:]) != string(want) {
			t.Errorf("mac with %d-byte key differs from sas.Sign", len(key))
		}
	}
	m := newMacer("x", tok)
	var raw [32]byte
	for _, bad := range []string{"", "not base64!", "===="} {
		if m.derive(&raw, bad) {
			t.Errorf("derive(%q) = true", bad)
		}
	}
}

func TestKeyCacheEtag(t *testing.T) {
	cache := NewKeyCache(2)
	a := &Attestor{Cache: cache}
	g := symGroup("g", vecGroup, "")
	src := &MemEnrollments{GroupList: []*model.EnrollmentGroup{g}}
	req := SASRequest{Enrollments: src, IDScope: vecScope, RegistrationID: vecRegID, Token: tokEncoded, Now: vecNow}
	if _, err := a.SymmetricKey(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache len = %d, want 1", cache.Len())
	}
	// Failed attempts do not fill the cache.
	bad := req
	bad.Token = build(t, vecOther, "", time.Unix(vecSE, 0))
	if _, err := a.SymmetricKey(context.Background(), bad); !errors.Is(err, ErrNoEnrollment) {
		t.Fatalf("bad key: err = %v", err)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache len after a refusal = %d, want 1", cache.Len())
	}
	// Rotating the key changes the etag: the old derived key must not be
	// served from the cache.
	g2 := symGroup("g", vecOther, "")
	g2.Etag = `"g-2"`
	src.GroupList = []*model.EnrollmentGroup{g2}
	if _, err := a.SymmetricKey(context.Background(), req); !errors.Is(err, ErrNoEnrollment) {
		t.Fatalf("after rotation err = %v, want ErrNoEnrollment", err)
	}
	for i := range 5 {
		cache.putAll([]cacheEntry{{key: cacheKey{group: "x", etag: "e", regID: string(rune('a' + i))}}})
	}
	if cache.Len() != 2 {
		t.Errorf("cache len = %d, want capacity 2", cache.Len())
	}
}

func BenchmarkSymmetricKey100Groups(b *testing.B) {
	groups := make([]*model.EnrollmentGroup, 100)
	for i := range groups {
		groups[i] = symGroup(string(rune('a'+i%26))+strings.Repeat("x", i), vecOther, vecOther)
	}
	groups[99] = symGroup("last", vecOther, vecGroup) // worst case: last group, secondary key
	src := &MemEnrollments{GroupList: groups}
	req := SASRequest{Enrollments: src, IDScope: vecScope, RegistrationID: vecRegID, Token: tokEncoded, Now: vecNow}
	for _, bc := range []struct {
		name  string
		cache *KeyCache
	}{{"nocache", nil}, {"cache", NewKeyCache(0)}} {
		b.Run(bc.name, func(b *testing.B) {
			a := &Attestor{Cache: bc.cache}
			b.ReportAllocs()
			for b.Loop() {
				if m, err := a.SymmetricKey(context.Background(), req); err != nil || m.KeyUsed != Secondary {
					b.Fatal(m, err)
				}
			}
		})
	}
}

func FuzzSymmetricKey(f *testing.F) {
	for _, s := range []string{tokEncoded, tokNode, tokC, "SharedAccessSignature sr=a&sig=b&se=c", "SharedAccessSignature ", "", "SharedAccessSignature sr=%zz&sig=%&se=-1&skn="} {
		f.Add(s, vecRegID)
	}
	src := &MemEnrollments{
		Individuals: []*model.IndividualEnrollment{symIndividual("dev1", vecDevice, "bad key"), disabled(symIndividual("dev2", "", ""))},
		GroupList:   []*model.EnrollmentGroup{symGroup("g", vecGroup, "%%%"), symGroup("h", "", vecOther), {EnrollmentGroupID: "nil-att"}},
	}
	a := &Attestor{Cache: NewKeyCache(16)}
	f.Fuzz(func(t *testing.T, token, regID string) {
		m, err := a.SymmetricKey(context.Background(), SASRequest{Enrollments: src, IDScope: vecScope, RegistrationID: regID, Token: token, Now: vecNow})
		if (m == nil) == (err == nil) {
			t.Fatalf("got %v, %v: want exactly one", m, err)
		}
		var ae *Error
		if err != nil && (!errors.As(err, &ae) || ae.Code != CodeSASUnauthorized || ae.Message == "") {
			t.Fatalf("err = %#v, want a 401000 refusal with a message", err)
		}
	})
}
