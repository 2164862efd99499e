package console

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opendps/opendps/internal/devenv"
)

// with returns b acting for subtest t (screenshots named after it).
func (b *browser) with(t *testing.T) *browser {
	c := *b
	c.t, c.shots = t, 0
	return &c
}

// tab opens another tab of b's browser, on the console at base.
func (b *browser) tab(base string) *browser {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab, for as long as ctx lives
		b.t.Fatalf("open a tab: %v", err)
	}
	c := *b
	c.ctx, c.base, c.shots = ctx, strings.TrimSuffix(base, "/"), 100
	return &c
}

// evalString evaluates a JavaScript expression of the page.
func (b *browser) evalString(expr string) string { return evaluate[string](b, expr) }

// bool evaluates a JavaScript expression of the page.
func (b *browser) bool(expr string) bool { return evaluate[bool](b, expr) }

// evaluate evaluates a JavaScript expression of the page to a T.
func evaluate[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitText reloads path until the element sel contains want.
func (b *browser) waitText(path, sel, want string, timeout time.Duration) string {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b.open(path, "main")
		got := b.evalString(`(document.querySelector(` + strconv.Quote(sel) + `) || {}).innerText || ""`)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			b.shot("timeout")
			b.t.Fatalf("%s %s: %q does not contain %q after %v", path, sel, got, want, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q does not contain %q", what, got, w)
		}
	}
}

// TestConsole is a tenant's and an operator's tour of one region (one
// zone): sign-in, a residency instance in Brazil South (the single-region
// deployment hosts every location), the DR choice in West Europe, and an
// enrollment.
func TestConsole(t *testing.T) {
	_, conn := startDeployment(t, devenv.Options{Zones: 1})
	b := newBrowser(t, conn.ConsoleURL)

	t.Run("SignIn", func(t *testing.T) {
		b := b.with(t)
		b.open("/instances", "#signin-operator")
		if loc := b.location(); !strings.Contains(loc, "/signin?next=") {
			t.Errorf("without a session /instances went to %s, want the sign-in page", loc)
		}
		if body := b.bodyText(); strings.Contains(body, conn.IDScope) || strings.Contains(body, "Overview") {
			t.Errorf("the sign-in page shows instance data:\n%s", body)
		}
		b.shot("signin")
		for try := 1; ; try++ {
			b.run("type a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"))
			if b.act("wrong token", chromedp.Click(chromedp.CSS("#signin-operator-submit")), "#error") || try == 3 {
				break
			}
			b.open("/signin", "#signin-operator")
		}
		wantContains(t, "wrong token", b.text("#error"), "The operator token is wrong.")
		if b.bool(`document.querySelector("#instances") !== null`) {
			t.Errorf("the instance list is shown after a wrong token")
		}
		b.shot("wrong-token")
		b.signInOperator(conn.OperatorToken)
		wantContains(t, "instance list", b.text("#instances"), "default", conn.IDScope)
		b.shot("instances")
	})

	t.Run("ResidencyInBrazilSouth", func(t *testing.T) {
		b := b.with(t)
		for try := 1; ; try++ {
			b.open("/instances/new", "#choose-region")
			b.run("select Brazil South", chromedp.SetValue(chromedp.CSS("#region"), "brazilsouth"))
			if b.act("choose Brazil South", chromedp.Submit(chromedp.CSS("#choose-region")), "#dr:not([disabled])") || try == 3 {
				break
			}
		}
		wantContains(t, "chosen region", b.text("#chosen-region"), "Brazil South (brazilsouth)")
		if !b.bool(`document.querySelector("#dr").checked`) {
			t.Errorf("Brazil South: the DR checkbox is not checked by default")
		}
		b.run("fill the form",
			chromedp.Click(chromedp.CSS("#dr")), // opt out: data residency
			chromedp.SendKeys(chromedp.CSS("#name"), "contoso-br"))
		if b.bool(`document.querySelector("#dr").checked`) {
			t.Fatalf("the DR checkbox did not uncheck")
		}
		b.shot("create-form")
		if b.act("create", chromedp.Click(chromedp.CSS("#create-submit")), "#overview") {
			wantContains(t, "flash", b.text("#flash"), "Instance contoso-br created.")
		} else { // did the create go through?
			b.open("/instances/contoso-br", "#overview")
		}
		if got := b.text("#dr"); got != "Disaster recovery: disabled" {
			t.Errorf("Overview of contoso-br: %q, want \"Disaster recovery: disabled\"", got)
		}
		wantContains(t, "region", b.text("#region"), "Brazil South (brazilsouth)")
		wantContains(t, "secondary region", b.text("#secondary-region"), "none")
		wantContains(t, "lag", b.text("#lag"), "not replicated (data residency)")
		if s := b.text("#idscope"); !strings.HasPrefix(s, "0ne") {
			t.Errorf("ID scope %q", s)
		}
		wantContains(t, "service endpoint", b.text("#service-endpoint"), "contoso-br.localhost")
		wantContains(t, "role and epoch", b.text("#role")+" "+b.text("#epoch"), "primary 1")
		b.shot("overview")
	})

	t.Run("NoDRChoiceInWestEurope", func(t *testing.T) {
		b := b.with(t)
		b.open("/instances/new?region=westeurope", "#create")
		wantContains(t, "chosen region", b.text("#chosen-region"), "West Europe (westeurope)")
		if !b.bool(`document.querySelector("#dr").disabled && document.querySelector("#dr").checked`) {
			t.Errorf("West Europe: the DR checkbox is not checked and disabled")
		}
		wantContains(t, "reason", b.text("#dr-reason"), "North Europe (northeurope)", "always on", "Brazil South")
		b.shot("westeurope")
	})

	t.Run("Enrollment", func(t *testing.T) {
		b := b.with(t)
		b.open("/instances/default/enrollments", "#create-enrollment")
		b.run("fill the enrollment form", chromedp.SendKeys(chromedp.CSS("#registrationId"), "console-dev-1"))
		if b.act("create an enrollment", chromedp.Click(chromedp.CSS("#create-enrollment-submit")), "#flash") {
			wantContains(t, "flash", b.text("#flash"), "Enrollment console-dev-1 created.")
		} else { // did the create go through?
			b.open("/instances/default/enrollments", "#enrollments")
		}
		wantContains(t, "enrollment list", b.text("#enrollments"), "console-dev-1", "symmetricKey", "enabled")
		b.shot("enrollments")
		b.open("/instances/default", "#overview")
		wantContains(t, "Overview counts", b.text("#enrollments"), "1 individual")
		wantContains(t, "Overview DR", b.text("#dr"), "Disaster recovery: enabled")
		b.shot("default-overview")
	})

	t.Run("PolicyRegenerate", func(t *testing.T) {
		b := b.with(t)
		// A policy of its own, so that the tenant's key (TenantSignIn) stays.
		row := `#policies tr[data-policy="console-e2e"]`
		for try := 1; ; try++ {
			b.open("/instances/default/policies", "#add-policy")
			if try > 1 && b.bool(`document.querySelector(`+strconv.Quote(row)+`) !== null`) {
				break // the lost request went through
			}
			b.run("fill the policy form",
				chromedp.SendKeys(chromedp.CSS("#keyName"), "console-e2e"),
				chromedp.Click(chromedp.CSS(`#add-policy input[value="EnrollmentRead"]`)))
			if b.act("add a policy", chromedp.Click(chromedp.CSS("#add-policy-submit")), row) || try == 3 {
				break
			}
		}
		keyOf := func() string {
			return b.evalString(`document.querySelector(` + strconv.Quote(row+" .primary-key") + `).textContent`)
		}
		wantContains(t, "new policy", b.text(row), "console-e2e", "show")
		if !b.bool(`document.querySelector(` + strconv.Quote(row+` input[value="EnrollmentRead"]`) + `).checked`) {
			t.Errorf("the new policy does not show its right EnrollmentRead")
		}
		before := keyOf()
		if len(before) < 40 {
			t.Fatalf("primary key shown %q", before)
		}
		wantContains(t, "connection string", b.evalString(`document.querySelector(`+strconv.Quote(row+" .primary-cs")+`).textContent`),
			"HostName=default.localhost", ";SharedAccessKeyName=console-e2e;SharedAccessKey="+before)
		b.shot("policies")
		b.evalString(`(document.querySelector("#flash") || {remove() {}}).remove(), ""`) // wait for the next page's
		if !b.act("regenerate the primary key", chromedp.Click(chromedp.CSS(row+" .regen-primary")), "#flash") {
			b.open("/instances/default/policies", row) // did it go through? the key says
		} else {
			wantContains(t, "flash", b.text("#flash"), "The primary key of policy console-e2e was regenerated.")
		}
		after := keyOf()
		if after == before || len(after) < 40 {
			t.Errorf("primary key after regenerate %q, before %q: want a new key", after, before)
		}
		b.shot("policy-regenerated")
	})

	t.Run("TenantSignIn", func(t *testing.T) {
		b := b.with(t)
		key := connKey(t, conn.ServiceConnectionString)
		for try := 1; ; try++ {
			if b.act("sign out", chromedp.Click(chromedp.CSS("header form button")), "#signin-tenant") || try == 3 {
				break
			}
			b.open("/instances", "#instances")
		}
		for try := 1; ; try++ {
			b.run("fill the tenant form",
				chromedp.SendKeys(chromedp.CSS("#instance"), "default"),
				chromedp.SendKeys(chromedp.CSS("#key"), key))
			if b.act("tenant sign-in", chromedp.Click(chromedp.CSS("#signin-tenant-submit")), "#overview") || try == 3 {
				break
			}
			b.open("/signin", "#signin-tenant")
		}
		wantContains(t, "tenant Overview", b.text("#idscope"), conn.IDScope)
		if b.bool(`document.querySelector('a[href="/regions"]') !== null`) {
			t.Errorf("a tenant is offered the region view")
		}
		b.open("/instances/contoso-br", "#error")
		wantContains(t, "another instance", b.text("#error"), "Your session is for instance default only.")
		b.shot("tenant")
	})
}

// connKey is the SharedAccessKey of a service connection string.
func connKey(t *testing.T, cs string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && k == "SharedAccessKey" {
			return v
		}
	}
	t.Fatalf("no SharedAccessKey in %q", cs)
	return ""
}

// TestRegionView shows the operator a region of three zones: a healthy
// node in each, one leader.
func TestRegionView(t *testing.T) {
	_, conn := startDeployment(t, devenv.Options{Zones: 3})
	b := newBrowser(t, conn.ConsoleURL)
	b.signInOperator(conn.OperatorToken)
	b.open("/regions", "#zones")
	if !b.bool(`document.querySelectorAll("#zones .zone").length === 3`) {
		t.Errorf("the region view does not show three zones:\n%s", b.text("#zones"))
	}
	for _, z := range []string{"1", "2", "3"} {
		wantContains(t, "zone "+z, b.text(`#zones .zone[data-zone="`+z+`"]`), "Zone "+z, "healthy")
	}
	zones := b.text("#zones")
	if n := strings.Count(zones, "leader"); n != 1 {
		t.Errorf("%d leaders in the zones, want 1:\n%s", n, zones)
	}
	if l := b.text("#leader"); l == "none" || !strings.Contains(zones, l) {
		t.Errorf("leader %q is not one of the zones' members", l)
	}
	wantContains(t, "summary", b.text("#region-summary"), "quorum: yes", "3 of 3", "zone-redundant: yes")
	b.shot("regions")
}

// TestPlannedFailover fails the default instance over from West Europe
// to North Europe from North Europe's console, after seeing what it may
// lose, and sees the roles change.
func TestPlannedFailover(t *testing.T) {
	_, conn := startDeployment(t, devenv.Options{Zones: 1, Regions: []devenv.RegionGroup{{"westeurope", "northeurope"}}})
	b := newBrowser(t, consoleOf(t, conn, "northeurope"))
	b.signInOperator(conn.OperatorToken)
	b.waitText("/regions", "#incoming", "streaming", 45*time.Second)

	// West Europe's console charts the lag of its stream to North Europe
	// (sampled every few seconds). Its session cookie is valid there too:
	// the deployment's nodes share the operator token, and the cookie is
	// for localhost, whatever the port.
	we := b.tab(consoleOf(t, conn, "westeurope"))
	we.waitText("/regions", "#replication figcaption", "westeurope → northeurope", 30*time.Second)
	if !we.bool(`document.querySelectorAll("#lag-chart polyline").length === 1`) {
		t.Errorf("the lag chart has no line")
	}
	wantContains(t, "West Europe streams", we.text("#streams"), "default", "North Europe (northeurope)", "streaming")
	we.shot("lag-chart")
	we.open("/instances/default", "#overview")
	wantContains(t, "West Europe Overview lag", we.text("#lag"), "ms to North Europe (northeurope)", "streaming")
	wantContains(t, "West Europe Overview role", we.text("#role")+" "+we.text("#epoch"), "primary 1")

	row := `#dr-instances tr[data-instance="default"]`
	wantContains(t, "default before", b.text(row), "West Europe (westeurope)", "secondary", "Fail over to northeurope")
	b.shot("regions-before")

	if !b.act("open the failover", chromedp.Click(chromedp.CSS(row+" a.button")), "#confirm-failover") {
		b.open("/regions/failover?instance=default", "#confirm-failover") // what the button links to
	}
	wantContains(t, "what may be lost", b.text("#may-lose"), "default", "West Europe (westeurope)", "streaming")
	wantContains(t, "loss warning", b.text("#loss"), "unplanned", "planned", "nothing is lost")
	if !b.bool(`document.querySelector("#mode-planned").checked`) {
		t.Errorf("planned is not the default mode")
	}
	b.shot("failover-preview")

	if !b.act("fail over", chromedp.Click(chromedp.CSS("#confirm-failover-submit")), "#operation") {
		// The failover started, or not: the console lists its failovers.
		b.open("/regions/failovers", "#operations")
		b.run("open the failover's page", chromedp.Click(chromedp.CSS("#operations a")), chromedp.WaitVisible(chromedp.CSS("#operation")))
	}
	op := strings.TrimPrefix(b.location(), b.base)
	if !strings.HasPrefix(op, "/regions/failovers/") {
		t.Fatalf("after confirming: %s, want a failover's page", op)
	}
	b.shot("failover-running")
	b.waitText(op, "#op-status", "Done", time.Minute)
	wantContains(t, "report", b.text("#operation"), "Planned failover", "West Europe (westeurope)", "North Europe (northeurope)", "default", "promoted")
	b.shot("failover-report")

	b.open("/instances/default", "#overview")
	wantContains(t, "primary region", b.text("#primary-region"), "northeurope")
	if got := b.text("#epoch"); got != "2" {
		t.Errorf("epoch %q, want 2", got)
	}
	if got := b.text("#role"); got != "primary" {
		t.Errorf("role in North Europe %q, want primary", got)
	}
	wantContains(t, "secondary region", b.text("#secondary-region"), "westeurope")
	b.shot("overview-after")
	b.open("/regions", "#dr-instances")
	wantContains(t, "default after", b.text(row), "North Europe (northeurope)", "primary", "2")
	b.shot("regions-after")
}

// TestLostWrites fails the default instance over from West Europe to
// North Europe unplanned (North Europe's console), sees West Europe's
// console say where the instance is primary now, fails it back (West
// Europe's console, planned, forced past the cool-down), and finds West
// Europe's lost-writes report of the unplanned failover in its region
// view, reads it and deletes it.
func TestLostWrites(t *testing.T) {
	_, conn := startDeployment(t, devenv.Options{Zones: 1, Regions: []devenv.RegionGroup{{"westeurope", "northeurope"}}})
	neURL, weURL := consoleOf(t, conn, "northeurope"), consoleOf(t, conn, "westeurope")
	ne := newBrowser(t, neURL)
	ne.signInOperator(conn.OperatorToken)
	ne.waitText("/regions", "#incoming", "streaming", 45*time.Second)

	// Unplanned failover to North Europe, from its console.
	failover := func(b *browser, unplanned, force bool) string {
		b.t.Helper()
		b.open("/regions/failover?instance=default", "#confirm-failover")
		wantContains(b.t, "what may be lost", b.text("#may-lose"), "default", "streaming")
		if unplanned {
			b.run("choose unplanned", chromedp.Click(chromedp.CSS("#mode-unplanned")))
		}
		if force {
			b.run("choose force", chromedp.Click(chromedp.CSS("#force")))
		}
		b.shot("failover-preview")
		if !b.act("fail over", chromedp.Click(chromedp.CSS("#confirm-failover-submit")), "#operation") {
			b.open("/regions/failovers", "#operations")
			b.run("open the failover's page", chromedp.Click(chromedp.CSS("#operations a")), chromedp.WaitVisible(chromedp.CSS("#operation")))
		}
		op := strings.TrimPrefix(b.location(), b.base)
		if !strings.HasPrefix(op, "/regions/failovers/") {
			b.t.Fatalf("after confirming: %s, want a failover's page", op)
		}
		b.waitText(op, "#op-status", "Done", time.Minute)
		return b.text("#operation")
	}
	wantContains(t, "unplanned failover report", failover(ne, true, false), "Unplanned failover", "default", "promoted")
	ne.shot("unplanned-report")

	// West Europe learns of epoch 2 and demotes itself, keeping what it
	// accepted after North Europe's last acknowledged revision.
	we := ne.tab(weURL)
	rep := we.waitText("/regions", "#lost-writes-reports", "1 → 2", 45*time.Second)
	wantContains(t, "lost-writes report", rep, "default", "North Europe (northeurope)")
	we.shot("lost-writes-after-failover")

	// West Europe's pages of the instance say where it is primary now.
	we.open("/instances/default/enrollments", "#elsewhere")
	wantContains(t, "elsewhere", we.text("#elsewhere"), "primary in North Europe (northeurope) now (epoch 2)")
	if href := we.evalString(`document.querySelector("#primary-console").href`); href != strings.TrimSuffix(neURL, "/")+"/instances/default/enrollments" {
		t.Errorf("link to North Europe's console %q, want its enrollments page at %s", href, neURL)
	}
	we.shot("primary-elsewhere")

	// Failback to West Europe, from its console, once it has a copy.
	we.waitText("/regions", "#incoming", "streaming", 45*time.Second)
	wantContains(t, "planned failback report", failover(we, false, true), "Planned failover", "default", "promoted")
	we.shot("failback-report")
	we.open("/instances/default", "#overview")
	if got := we.text("#role") + " " + we.text("#epoch"); got != "primary 3" {
		t.Errorf("West Europe after the failback: %q, want primary 3", got)
	}

	// The report is still there; read it and delete it.
	we.open("/regions", "#lost-writes-reports")
	reportRow := `#lost-writes-reports tr[data-instance="default"][data-epoch="2"]`
	wantContains(t, "report after the failback", we.text(reportRow), "default", "1 → 2", "North Europe (northeurope)")
	we.shot("lost-writes-after-failback")
	if !we.act("view the report", chromedp.Click(chromedp.CSS(reportRow+" a")), "#lost-writes-report") {
		we.open("/regions/lost-writes/default/2", "#lost-writes-report")
	}
	wantContains(t, "report page", we.text("#lost-writes-report"), "default", "West Europe (westeurope) at epoch 1", "North Europe (northeurope) at epoch 2")
	wantContains(t, "writes", we.text("#writes"), "writes accepted here after revision")
	we.shot("lost-writes-report")
	for try := 1; ; try++ {
		we.run("confirm dealt with", chromedp.Click(chromedp.CSS("#dealt-with")))
		if we.act("delete the report", chromedp.Click(chromedp.CSS("#delete-lost-writes-submit")), "#lost-writes-reports") || try == 3 {
			break
		}
		we.open("/regions", "#lost-writes-reports")
		if !we.bool(`document.querySelector(` + strconv.Quote(reportRow) + `) !== null`) {
			break // deleted
		}
		we.open("/regions/lost-writes/default/2", "#delete-lost-writes")
	}
	we.open("/regions", "#lost-writes-reports")
	if we.bool(`document.querySelector(` + strconv.Quote(reportRow) + `) !== null`) {
		t.Errorf("the report is still listed after its deletion:\n%s", we.text("#lost-writes-reports"))
	}
	wantContains(t, "no reports", we.text("#lost-writes-reports"), "this region has lost no writes")
	we.shot("lost-writes-deleted")
}
