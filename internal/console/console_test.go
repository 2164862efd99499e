package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
)

const testToken = "operator-token-for-tests"

// fixture is a console over fakes, served by httptest.
type fixture struct {
	srv  *httptest.Server
	inst *fakeInstances
	enr  *fakeEnrollments
}

func testView(name string, policies ...model.AccessPolicy) *instance.View {
	return &instance.View{
		Instance: model.Instance{Name: name, IDScope: "0ne00000001", Location: "westeurope", AuthorizationPolicies: policies},
		Dir:      model.DirEntry{Name: name, Primary: "westeurope", Secondary: "northeurope", DREnabled: true, Role: model.RolePrimary, Epoch: 1},
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		inst: newFakeInstances(
			testView("contoso",
				model.AccessPolicy{KeyName: "owner", PrimaryKey: "b3duZXIta2V5LW9mLWNvbnRvc28=", Rights: "ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite"},
				model.AccessPolicy{KeyName: "reader", PrimaryKey: "cmVhZGVyLWtleS1vZi1jb250b3Nv", Rights: "EnrollmentRead, RegistrationStatusRead"}),
			testView("fabrikam", model.AccessPolicy{KeyName: "owner", PrimaryKey: "ZmFicmlrYW0ta2V5", Rights: "EnrollmentRead"})),
		enr: newFakeEnrollments(),
	}
	c, err := New(Config{Instances: f.inst, Enrollments: f.enr, Catalog: regions.Builtin(),
		OperatorToken: testToken, RegionName: "westeurope", SampleInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.srv = httptest.NewServer(c)
	t.Cleanup(f.srv.Close)
	return f
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: f.srv.URL, hc: &http.Client{Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string, http.Header) {
	b.t.Helper()
	resp, err := b.hc.Get(b.base + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func (b *browser) post(path string, form url.Values) (int, string, http.Header) {
	b.t.Helper()
	resp, err := b.hc.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the CSRF token of the forms of the page at path.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	code, body, _ := b.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		b.t.Fatalf("GET %s: %d, no CSRF token in the page:\n%s", path, code, body)
	}
	return m[1]
}

func (b *browser) signIn(form url.Values) (int, string, http.Header) {
	b.t.Helper()
	form.Set("csrf", b.csrf("/signin"))
	return b.post("/signin", form)
}

func (b *browser) signInOperator() {
	b.t.Helper()
	if code, body, _ := b.signIn(url.Values{"token": {testToken}}); code != http.StatusSeeOther {
		b.t.Fatalf("operator sign-in: %d\n%s", code, body)
	}
}

func (b *browser) signInTenant(inst, key string) {
	b.t.Helper()
	if code, body, _ := b.signIn(url.Values{"instance": {inst}, "key": {key}}); code != http.StatusSeeOther {
		b.t.Fatalf("tenant sign-in: %d\n%s", code, body)
	}
}

func TestNothingWithoutSession(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	for _, p := range []string{"/", "/instances", "/instances/contoso", "/instances/contoso/enrollments", "/regions", "/instances/new", "/nowhere"} {
		code, body, h := b.get(p)
		if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/signin") {
			t.Errorf("GET %s without a session: %d %q, want a redirect to /signin", p, code, h.Get("Location"))
		}
		if strings.Contains(body, "0ne00000001") || strings.Contains(body, "Overview") {
			t.Errorf("GET %s without a session shows instance data", p)
		}
	}
	code, _, _ := b.post("/instances/contoso/enrollments", url.Values{"registrationId": {"x"}})
	if code != http.StatusUnauthorized {
		t.Errorf("POST without a session: %d, want 401", code)
	}
	if len(f.enr.enr) != 0 {
		t.Errorf("an enrollment was created without a session")
	}
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	code, body, h := b.signIn(url.Values{"token": {"wrong"}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "The operator token is wrong.") {
		t.Errorf("wrong token: %d, want 401 with the reason", code)
	}
	if strings.Contains(h.Get("Set-Cookie"), cookieSession+"=") {
		t.Errorf("wrong token set a session cookie: %s", h.Get("Set-Cookie"))
	}
	if code, _, _ := b.get("/instances"); code != http.StatusSeeOther {
		t.Errorf("after a refused sign-in GET /instances: %d, want a redirect", code)
	}
	code, _, _ = b.signIn(url.Values{"instance": {"contoso"}, "key": {"ZmFicmlrYW0ta2V5"}}) // fabrikam's key
	if code != http.StatusUnauthorized {
		t.Errorf("another instance's key: %d, want 401", code)
	}

	code, _, h = b.signIn(url.Values{"token": {testToken}})
	if code != http.StatusSeeOther {
		t.Fatalf("operator sign-in: %d", code)
	}
	ck := h.Get("Set-Cookie")
	for _, want := range []string{cookieSession + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	code, body, _ = b.get("/instances")
	if code != http.StatusOK || !strings.Contains(body, "contoso") || !strings.Contains(body, "fabrikam") {
		t.Errorf("operator's instance list: %d\n%s", code, body)
	}
	if code, _, _ := b.get("/regions"); code != http.StatusOK {
		t.Errorf("operator's region view: %d", code)
	}
	// Signing out ends the session.
	b.post("/signout", url.Values{"csrf": {b.csrf("/instances")}})
	if code, _, _ := b.get("/instances"); code != http.StatusSeeOther {
		t.Errorf("after sign-out GET /instances: %d, want a redirect", code)
	}
}

func TestSessionCookieTampered(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("fabrikam", "ZmFicmlrYW0ta2V5")
	u, _ := url.Parse(f.srv.URL)
	var val string
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == cookieSession {
			val = c.Value
		}
	}
	body, sig, _ := strings.Cut(val, ".")
	// The same session, claiming to be the operator, with the old signature.
	forged := strings.Replace(string(mustB64(t, body)), `"sid"`, `"op":true,"sid"`, 1)
	for _, v := range []string{b64(forged) + "." + sig, body + "." + sig[:len(sig)-2] + "AA", body} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/regions", nil)
		req.AddCookie(&http.Cookie{Name: cookieSession, Value: v})
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("tampered cookie %q: %d, want a redirect to sign-in", v, resp.StatusCode)
		}
	}
}

func TestTenantSessionEndsWithItsKey(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("contoso", "cmVhZGVyLWtleS1vZi1jb250b3Nv")
	if code, _, _ := b.get("/instances/contoso"); code != http.StatusOK {
		t.Fatalf("tenant overview: %d", code)
	}
	f.inst.setKey("contoso", "reader", "bmV3LWtleQ==")
	if code, _, _ := b.get("/instances/contoso"); code != http.StatusSeeOther {
		t.Errorf("after the key changed: %d, want a redirect to sign-in", code)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	// The sign-in form itself needs its token.
	if code, _, _ := b.post("/signin", url.Values{"token": {testToken}}); code != http.StatusForbidden {
		t.Errorf("sign-in without CSRF token: %d, want 403", code)
	}
	b.signInOperator()
	tok := b.csrf("/instances/contoso/enrollments")
	for _, bad := range []string{"", "x" + tok[1:], f.browser(t).csrf("/signin")} {
		form := url.Values{"registrationId": {"dev-1"}}
		if bad != "" {
			form.Set("csrf", bad)
		}
		code, body, _ := b.post("/instances/contoso/enrollments", form)
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("POST with CSRF token %q: %d, want 403", bad, code)
		}
	}
	if len(f.enr.enr) != 0 {
		t.Fatalf("an enrollment was created without a valid CSRF token")
	}
	// A token of another session does not do either.
	other := f.browser(t)
	other.signInOperator()
	otherTok := other.csrf("/instances")
	if code, _, _ := b.post("/instances/contoso/enrollments", url.Values{"registrationId": {"dev-1"}, "csrf": {otherTok}}); code != http.StatusForbidden {
		t.Errorf("POST with another session's token: %d, want 403", code)
	}
	code, _, h := b.post("/instances/contoso/enrollments", url.Values{"registrationId": {"dev-1"}, "csrf": {tok}})
	if code != http.StatusSeeOther || h.Get("Location") != "/instances/contoso/enrollments" {
		t.Fatalf("POST with the token: %d %s", code, h.Get("Location"))
	}
	if _, ok := f.enr.enr["contoso/dev-1"]; !ok {
		t.Errorf("enrollment dev-1 not created")
	}
	_, body, _ := b.get("/instances/contoso/enrollments")
	if !strings.Contains(body, "Enrollment dev-1 created.") || !strings.Contains(body, `>dev-1</a></td>`) {
		t.Errorf("the list does not show dev-1 and the message:\n%s", body)
	}
}

func TestRights(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInTenant("contoso", "cmVhZGVyLWtleS1vZi1jb250b3Nv") // EnrollmentRead, RegistrationStatusRead
	code, body, _ := b.get("/instances/contoso/enrollments")
	if code != http.StatusOK {
		t.Fatalf("reader's enrollment list: %d", code)
	}
	if strings.Contains(body, `id="create-enrollment"`) {
		t.Errorf("the create form is offered to a policy without EnrollmentWrite")
	}
	tok := csrfRE.FindStringSubmatch(body)[1]
	code, body, _ = b.post("/instances/contoso/enrollments", url.Values{"registrationId": {"dev-2"}, "csrf": {tok}})
	if code != http.StatusForbidden || !strings.Contains(body, "does not grant EnrollmentWrite") {
		t.Errorf("reader creating an enrollment: %d, want 403 naming EnrollmentWrite\n%s", code, body)
	}
	if len(f.enr.enr) != 0 {
		t.Errorf("the reader created an enrollment")
	}
	for path, want := range map[string]int{
		"/instances/contoso/hubs":   http.StatusForbidden, // ServiceConfig
		"/instances/fabrikam":       http.StatusForbidden, // another instance
		"/regions":                  http.StatusForbidden, // operator only
		"/instances/new":            http.StatusForbidden,
		"/instances/contoso":        http.StatusOK,
		"/instances/contoso/groups": http.StatusOK,
	} {
		if code, _, _ := b.get(path); code != want {
			t.Errorf("reader GET %s: %d, want %d", path, code, want)
		}
	}
	code, body, _ = b.get("/instances")
	if code != http.StatusOK || strings.Contains(body, "fabrikam") {
		t.Errorf("the tenant's instance list shows other instances (%d)", code)
	}
}

func TestEscaping(t *testing.T) {
	f := newFixture(t)
	const evil = `<script>alert("x")</script>`
	f.enr.enr["contoso/"+evil] = &model.IndividualEnrollment{RegistrationID: evil, DeviceID: evil,
		EnrollmentCommon: model.EnrollmentCommon{Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey}, ProvisioningStatus: model.StatusEnabled}}
	b := f.browser(t)
	b.signInOperator()
	for _, p := range []string{"/instances/contoso/enrollments", "/instances/contoso/registrations?id=" + url.QueryEscape(evil)} {
		code, body, _ := b.get(p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", p, code)
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("GET %s: the id is not escaped:\n%s", p, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("GET %s: the escaped id is missing:\n%s", p, body)
		}
	}
}

func TestCreateInstanceDR(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signInOperator()
	_, body, _ := b.get("/instances/new?region=westeurope")
	if !regexp.MustCompile(`id="dr" checked disabled`).MatchString(body) || !strings.Contains(body, "disaster recovery is always on there") {
		t.Errorf("West Europe: the DR checkbox is not shown checked and disabled with the reason:\n%s", body)
	}
	_, body, _ = b.get("/instances/new?region=brazilsouth")
	if !strings.Contains(body, `id="dr" checked>`) || strings.Contains(body, "always on") {
		t.Errorf("Brazil South: the DR checkbox is not offered:\n%s", body)
	}
	tok := csrfRE.FindStringSubmatch(body)[1]
	// Unchecked in Brazil South: data residency. "Unchecked" in West Europe
	// (the disabled box is never sent): DR stays on.
	for _, c := range []struct {
		name, region string
		residency    bool
	}{{"res1", "brazilsouth", true}, {"we1", "westeurope", false}} {
		code, _, h := b.post("/instances", url.Values{"csrf": {tok}, "name": {c.name}, "region": {c.region}})
		if code != http.StatusSeeOther || h.Get("Location") != "/instances/"+c.name {
			t.Fatalf("create %s: %d %s", c.name, code, h.Get("Location"))
		}
		_, body, _ = b.get("/instances/" + c.name)
		want := "Disaster recovery: enabled"
		if c.residency {
			want = "Disaster recovery: disabled"
		}
		if !strings.Contains(body, want) {
			t.Errorf("%s Overview lacks %q", c.name, want)
		}
	}
	if got := f.inst.created; len(got) != 2 || !*got[0].EnableDataResidency || *got[1].EnableDataResidency {
		t.Errorf("created specs: residency %v, %v; want true, false", *got[0].EnableDataResidency, *got[1].EnableDataResidency)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{"/instances/x": "/instances/x", "//evil.example": "", "https://evil.example/": "",
		"/\\evil": "", "/signin?next=/": "", "": ""} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLagChart(t *testing.T) {
	c, err := New(Config{Instances: newFakeInstances(), Enrollments: newFakeEnrollments(), Catalog: regions.Builtin(),
		OperatorToken: testToken, RegionName: "westeurope", SampleInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cfg.SampleInterval = DefaultSampleInterval
	c.cfg.Replication = func(context.Context) ([]model.ReplStatus, []model.ReplState, error) {
		return []model.ReplStatus{{Instance: "a", Destination: "northeurope", LagMs: 40}, {Instance: "b", Destination: "northeurope", LagMs: 250}}, nil, nil
	}
	c.lag = newLagRing(3)
	now := time.Now()
	for i := range 5 {
		c.sampleOnce(now.Add(time.Duration(i-4) * time.Second))
	}
	if n := len(c.lag.samples()); n != 3 {
		t.Errorf("ring holds %d samples, want 3", n)
	}
	ch := c.lagChart(now)
	if len(ch.Series) != 1 || ch.Series[0].Pair != "westeurope → northeurope" || ch.Series[0].Last != "250 ms" {
		t.Errorf("chart series %+v, want one pair at its largest lag (250 ms)", ch.Series)
	}
	if pts := strings.Fields(ch.Series[0].Points); len(pts) != 3 {
		t.Errorf("chart points %q, want 3", ch.Series[0].Points)
	}
}

// fakeDR records failovers and promotes at once; it keeps lost-writes
// reports and records fences.
type fakeDR struct {
	mu     sync.Mutex
	reqs   []model.FailoverRequest
	fences []model.FenceRequest
	lost   []model.LostWrites
}

func (d *fakeDR) Fence(ctx context.Context, req model.FenceRequest) (*model.FenceResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fences = append(d.fences, req)
	status := model.FenceFenced
	if req.Undo {
		status = model.FenceUnfenced
	}
	res := &model.FenceResult{Region: "westeurope"}
	for _, in := range req.Instances {
		res.Items = append(res.Items, model.FenceItem{Instance: in, Epoch: 1, Status: status})
	}
	return res, nil
}

func (d *fakeDR) LostWrites(ctx context.Context, instance string) ([]model.LostWrites, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []model.LostWrites
	for _, lw := range d.lost {
		if instance == "" || lw.Instance == instance {
			lw.Writes = slices.Clone(lw.Writes)
			out = append(out, lw)
		}
	}
	return out, nil
}

func (d *fakeDR) DeleteLostWrites(ctx context.Context, instance string, newEpoch uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, lw := range d.lost {
		if lw.Instance == instance && lw.NewEpoch == newEpoch {
			d.lost = slices.Delete(d.lost, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("%w: no lost-writes report of %s at epoch %d", dr.ErrNotFound, instance, newEpoch)
}

func (d *fakeDR) Failover(ctx context.Context, req model.FailoverRequest) (*model.FailoverReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reqs = append(d.reqs, req)
	return &model.FailoverReport{Region: "westeurope", To: "northeurope", Planned: req.Planned,
		Items: []model.FailoverItem{{Instance: "contoso", From: "westeurope", To: "northeurope", Epoch: 2, Status: model.FailoverPromoted, LastReplicatedRev: 42}}}, nil
}

func TestFailover(t *testing.T) {
	secondary := testView("contoso")
	secondary.Dir.Role = model.RoleSecondary
	primary := testView("fabrikam") // primary here: its failover runs in northeurope
	primary.Dir.Primary, primary.Dir.Secondary = "northeurope", "westeurope"
	d := &fakeDR{}
	c, err := New(Config{Instances: newFakeInstances(secondary, primary), Enrollments: newFakeEnrollments(), Catalog: regions.Builtin(),
		OperatorToken: testToken, RegionName: "northeurope", DR: d, SampleInterval: -1,
		Replication: func(context.Context) ([]model.ReplStatus, []model.ReplState, error) {
			return nil, []model.ReplState{{Instance: "contoso", Source: "westeurope", Epoch: 1, Phase: model.ReplStreaming, Rev: 41,
				SourceTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := httptest.NewServer(c)
	defer srv.Close()
	b := (&fixture{srv: srv}).browser(t)
	b.signInOperator()

	code, body, _ := b.get("/regions/failover?instance=contoso")
	if code != http.StatusOK {
		t.Fatalf("preview: %d\n%s", code, body)
	}
	for _, want := range []string{"41", "2026-01-02 03:04:05Z", "streaming", "West Europe (westeurope)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the preview does not show %q (what may be lost)", want)
		}
	}
	if len(d.reqs) != 0 {
		t.Fatalf("the preview failed over")
	}
	if code, _, _ := b.get("/regions/failover?instance=fabrikam"); code != http.StatusConflict {
		t.Errorf("preview of an instance primary here: %d, want 409", code)
	}
	tok := csrfRE.FindStringSubmatch(body)[1]
	code, _, h := b.post("/regions/failover", url.Values{"csrf": {tok}, "instance": {"contoso"}, "mode": {"planned"}})
	op := h.Get("Location")
	if code != http.StatusSeeOther || !strings.HasPrefix(op, "/regions/failovers/") {
		t.Fatalf("confirm: %d %s", code, op)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body, _ = b.get(op)
		if strings.Contains(body, "Done in") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(body, "promoted") || !strings.Contains(body, "North Europe (northeurope)") {
		t.Errorf("the operation page does not show the report:\n%s", body)
	}
	if len(d.reqs) != 1 || !d.reqs[0].Planned || d.reqs[0].Instances[0] != "contoso" {
		t.Errorf("failover requests %+v, want one planned failover of contoso", d.reqs)
	}
	if _, body, _ := b.get("/regions/failovers"); !strings.Contains(body, op) {
		t.Errorf("the failover list does not link %s", op)
	}
}
