// Package console drives the web console (internal/console) of real
// in-process dev deployments with Debian's Chromium, headless, through
// chromedp: what a tenant and an operator see and do. Every step saves a
// screenshot (PNG) to $OPENDPS_ARTIFACTS (default: a temporary directory,
// logged), which CI keeps as artifacts.
//
// Without /usr/bin/chromium the tests skip, unless OPENDPS_REQUIRE_BROWSER
// is set (scripts/test sets it, so CI never skips).
package console

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/opendps/opendps/internal/devenv"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// chromiumPath is Debian's Chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one browser step (a page load and its checks).
const stepTimeout = 30 * time.Second

var (
	artifactsOnce sync.Once
	artifactsDir  string
	artifactsErr  error
)

// artifacts returns the screenshot directory, creating it once.
func artifacts(t *testing.T) string {
	t.Helper()
	artifactsOnce.Do(func() {
		artifactsDir = os.Getenv("OPENDPS_ARTIFACTS")
		if artifactsDir == "" {
			artifactsDir, artifactsErr = os.MkdirTemp("", "opendps-console-artifacts-")
		} else {
			artifactsDir = filepath.Join(artifactsDir, "console")
			artifactsErr = os.MkdirAll(artifactsDir, 0o755)
		}
	})
	if artifactsErr != nil {
		t.Fatal(artifactsErr)
	}
	return artifactsDir
}

// chromium returns the browser's path, or skips the test when it is
// missing and not required.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("OPENDPS_REQUIRE_BROWSER") != "" {
		t.Fatalf("OPENDPS_REQUIRE_BROWSER is set but %s is missing: apt-get install chromium", chromiumPath)
	}
	t.Skipf("browser tests skipped: %s is missing (apt-get install chromium; scripts/test installs it and sets OPENDPS_REQUIRE_BROWSER=1)", chromiumPath)
	return ""
}

// browser is one headless Chromium tab of a test.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string // console URL
	shots int
}

// newBrowser starts Chromium for t (closed at cleanup), on the console
// at base. The deployment's certificates come from its own CA, which the
// browser does not know: certificate errors are ignored.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // root in CI containers
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1366, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	t.Logf("screenshots in %s", artifacts(t))
	return &browser{t: t, ctx: ctx, base: strings.TrimSuffix(base, "/")}
}

// run runs actions within stepTimeout, failing the test (after a
// screenshot) on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + what)
		b.t.Fatalf("%s: %v (page %s)", what, err, b.location())
	}
}

// shot saves a full-page PNG screenshot as {test}-{n}-{name}.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.shots++
	test := regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(b.t.Name(), "_")
	p := filepath.Join(artifacts(b.t), fmt.Sprintf("%s-%02d-%s.png", test, b.shots, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
}

func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

// open loads path and waits for the element sel. A load that a network
// change interrupted is retried (see act).
func (b *browser) open(path, sel string) {
	b.t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		err := chromedp.Do(ctx, chromedp.Navigate(b.base+path))
		cancel()
		var le *chromedp.LoadError
		if errors.As(err, &le) && strings.Contains(le.ErrorText, "ERR_NETWORK_CHANGED") && try < 3 {
			b.t.Logf("open %s: %v; again", path, err)
			continue
		}
		if err != nil {
			b.shot("failed-open")
			b.t.Fatalf("open %s: %v", path, err)
		}
		break
	}
	b.run("open "+path, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// act runs action (a click or a submit that loads another page) and waits
// until the page shows the element want. It returns false when Chromium
// lost the request to a network change (ERR_NETWORK_CHANGED: it drops
// requests in flight when the machine's interfaces change, as the network
// namespaces of other packages' fault tests do); the caller then checks
// what happened, or acts again when that is harmless.
func (b *browser) act(what string, action chromedp.Action[chromedp.Void], want string) bool {
	b.t.Helper()
	b.run(what, action)
	js := `location.href.startsWith("chrome-error:") ? "neterr" : (document.querySelector(` + strconv.Quote(want) + `) ? "ok" : "")`
	deadline := time.Now().Add(stepTimeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js)) // fails while the next page loads
		cancel()
		switch v {
		case "ok":
			return true
		case "neterr":
			b.t.Logf("%s: the browser lost the request to a network change (ERR_NETWORK_CHANGED)", what)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.shot("failed-" + what)
	b.t.Fatalf("%s: %s did not appear within %v (page %s)", what, want, stepTimeout, b.location())
	return false
}

// text returns the text of the element sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.shot("failed-read")
		b.t.Fatalf("read %s: %v (page %s)", sel, err, b.location())
	}
	return strings.TrimSpace(s)
}

// bodyText is the whole page's text.
func (b *browser) bodyText() string { return b.text("body") }

// signInOperator signs in with the operator token.
func (b *browser) signInOperator(token string) {
	b.t.Helper()
	for try := 1; ; try++ {
		b.open("/signin", "#signin-operator")
		b.run("type the token", chromedp.SendKeys(chromedp.CSS("#token"), token))
		if b.act("operator sign-in", chromedp.Click(chromedp.CSS("#signin-operator-submit")), "#instances") || try == 3 {
			return
		}
	}
}

// startDeployment starts an in-process dev deployment for t.
func startDeployment(t *testing.T, opts devenv.Options) (*devenv.Deployment, *dpsclient.Connection) {
	t.Helper()
	opts.DataDir, opts.LogLevel = t.TempDir(), "error"
	start := time.Now()
	d, err := devenv.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	conn, err := dpsclient.LoadConnection(d.ConnectionPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deployment started in %v", time.Since(start).Round(time.Millisecond))
	return d, conn
}

// consoleOf is the console URL of the first node of region.
func consoleOf(t *testing.T, conn *dpsclient.Connection, region string) string {
	t.Helper()
	for _, n := range conn.Nodes {
		if n.Region == region && n.ConsoleURL != "" {
			return n.ConsoleURL
		}
	}
	t.Fatalf("connection.json lists no console of region %s: %+v", region, conn.Nodes)
	return ""
}
