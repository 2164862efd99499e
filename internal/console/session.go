package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
)

// Sessions (docs/console.md, "Security"):
//
//   - The session is a cookie holding a JSON record and its HMAC-SHA256
//     under the console key (Console.key): who signed in, until when, and a
//     random session id. It is HttpOnly, SameSite=Strict, Path=/, and
//     Secure on TLS (every node listener is TLS).
//   - A tenant session holds the instance, the policy name and a hash of
//     the key signed in with, never the key: every request re-reads the
//     policy and requires that one of its keys still hashes to it, so
//     regenerating or removing the key, or the policy, ends the session
//     and a change of rights applies at once.
//   - Every POST carries a CSRF token, HMAC(key, session id), in a hidden
//     form field; the sign-in form's token is bound to a pre-session cookie
//     the same way.
const (
	cookieSession = "opendps_console"
	cookiePre     = "opendps_console_pre"
	cookieFlash   = "opendps_console_flash"
	fieldCSRF     = "csrf"
)

// session is the signed content of the session cookie.
type session struct {
	ID       string `json:"sid"`
	Operator bool   `json:"op,omitempty"`
	Instance string `json:"in,omitempty"`
	Policy   string `json:"pol,omitempty"`
	KeyHash  string `json:"kh,omitempty"`
	Expires  int64  `json:"exp"`
}

// principal is who a request acts for: the operator, or one instance's
// policy with its rights.
type principal struct {
	Operator bool
	Instance string
	Policy   string
	Rights   string
	CSRF     string // the token forms of this session carry
}

// Can reports whether p holds right (operators hold every right).
func (p *principal) Can(right string) bool {
	if p.Operator {
		return true
	}
	for _, r := range strings.Split(p.Rights, ",") {
		if strings.EqualFold(strings.TrimSpace(r), right) {
			return true
		}
	}
	return false
}

// Sees reports whether p may see instance name.
func (p *principal) Sees(name string) bool {
	return p.Operator || strings.EqualFold(p.Instance, name)
}

// handlerFunc is a page handler: it writes the page or returns an error
// that Console.fail renders.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *principal) error

// pageError is an error with a status and a message safe to show.
type pageError struct {
	Status int
	Msg    string
}

func (e *pageError) Error() string { return "console: " + e.Msg }

func forbidden(msg string) error { return &pageError{Status: http.StatusForbidden, Msg: msg} }

func badRequest(msg string) error { return &pageError{Status: http.StatusBadRequest, Msg: msg} }

// auth runs h for a request with a valid session (and, on POST, a valid
// CSRF token); otherwise it sends the browser to the sign-in page.
func (c *Console) auth(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := c.principal(r)
		var pe *pageError
		if errors.As(err, &pe) {
			c.fail(w, r, nil, err) // the session may be good: keep it
			return
		}
		if err != nil {
			c.clearCookie(w, r, cookieSession)
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, &pageError{Status: http.StatusUnauthorized, Msg: "Sign in first."})
			return
		}
		if r.Method == http.MethodPost && !c.checkCSRF(r, p.CSRF) {
			c.fail(w, r, p, forbidden("The form is stale or did not come from this console (CSRF check failed): reload the page and try again."))
			return
		}
		if err := h(w, r, p); err != nil {
			c.fail(w, r, p, err)
		}
	})
}

// op is auth for the operator's pages.
func (c *Console) op(h handlerFunc) http.Handler {
	return c.auth(func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if !p.Operator {
			return forbidden("This page is for the operator: sign in with the operator token.")
		}
		return h(w, r, p)
	})
}

// tenant is auth for the pages of instance {name}.
func (c *Console) tenant(h handlerFunc) http.Handler {
	return c.auth(func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if !p.Sees(r.PathValue("name")) {
			return forbidden("Your session is for instance " + p.Instance + " only.")
		}
		return h(w, r, p)
	})
}

// principal verifies the session cookie of r and, for a tenant, that its
// policy and key still exist.
func (c *Console) principal(r *http.Request) (*principal, error) {
	ck, err := r.Cookie(cookieSession)
	if err != nil {
		return nil, err
	}
	var s session
	if err := c.unseal(ck.Value, &s); err != nil {
		return nil, err
	}
	if time.Now().Unix() >= s.Expires || s.ID == "" {
		return nil, errors.New("console: session expired")
	}
	p := &principal{Operator: s.Operator, CSRF: c.mac("csrf:" + s.ID)}
	if s.Operator {
		return p, nil
	}
	in, err := c.cfg.Instances.Lookup(r.Context(), s.Instance)
	if errors.Is(err, instance.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		c.log.Warn("console: session check failed", "err", err)
		return nil, &pageError{Status: http.StatusServiceUnavailable, Msg: "The console cannot read your instance right now; try again in a moment."}
	}
	pol := in.Policy(s.Policy)
	if pol == nil || (keyHash(pol.PrimaryKey) != s.KeyHash && keyHash(pol.SecondaryKey) != s.KeyHash) {
		return nil, errors.New("console: the policy or key of the session is gone")
	}
	p.Instance, p.Policy, p.Rights = in.Name, pol.KeyName, pol.Rights
	return p, nil
}

// keyHash identifies a policy key in a session without holding it.
func keyHash(key string) string {
	if key == "" {
		return "-"
	}
	h := sha256.Sum256([]byte("opendps console key:" + key))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// mac is base64url(HMAC-SHA256(console key, s)).
func (c *Console) mac(s string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// seal encodes v as base64url(JSON) "." mac.
func (c *Console) seal(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(b)
	return body + "." + c.mac(body), nil
}

// unseal checks the mac of a sealed value and decodes it into v.
func (c *Console) unseal(s string, v any) error {
	body, sig, ok := strings.Cut(s, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(c.mac(body))) {
		return errors.New("console: bad signature")
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (c *Console) checkCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue(fieldCSRF)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func randomID() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	if _, err := r.Cookie(name); err == nil {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	}
}

// preToken returns the sign-in form's CSRF token, setting the pre-session
// cookie it is bound to when the request has none.
func (c *Console) preToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(cookiePre); err == nil && len(ck.Value) >= 16 {
		v = ck.Value
	} else {
		v = randomID()
		c.setCookie(w, r, cookiePre, v, time.Hour)
	}
	return c.mac("pre:" + v)
}

type signInData struct {
	Next, Instance, Error string
	Operator              bool
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, err := c.principal(r); err == nil {
		http.Redirect(w, r, "/instances", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "signin", &principal{CSRF: c.preToken(w, r)}, "Sign in",
		signInData{Next: safeNext(r.URL.Query().Get("next"))})
}

// signIn checks the operator token, or an instance name and policy key,
// and starts a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	pre := &principal{CSRF: c.preToken(w, r)}
	if !c.checkCSRF(r, pre.CSRF) {
		c.fail(w, r, pre, forbidden("The sign-in form is stale (CSRF check failed): reload the page and try again."))
		return
	}
	d := signInData{Next: safeNext(r.PostFormValue("next")), Instance: strings.TrimSpace(r.PostFormValue("instance"))}
	if ok, wait := c.signIns.allow(clientIP(r)); !ok {
		secs := int(wait.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		d.Error, d.Operator = fmt.Sprintf("Too many sign-in attempts from your address: wait %d s and try again.", secs), r.PostFormValue("token") != ""
		c.log.Warn("console sign-in rate-limited", "client_ip", clientIP(r))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		c.render(w, r, http.StatusTooManyRequests, "signin", pre, "Sign in", d)
		return
	}
	s := session{ID: randomID(), Expires: time.Now().Add(c.cfg.SessionTTL).Unix()}
	if tok := r.PostFormValue("token"); tok != "" {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(c.cfg.OperatorToken)) != 1 {
			d.Error, d.Operator = "The operator token is wrong.", true
			c.log.Info("console sign-in refused", "kind", "operator")
			c.render(w, r, http.StatusUnauthorized, "signin", pre, "Sign in", d)
			return
		}
		s.Operator = true
	} else {
		pol := c.tenantPolicy(r, d.Instance, r.PostFormValue("key"))
		if pol == nil {
			d.Error = "The instance name or the policy key is wrong."
			c.log.Info("console sign-in refused", "kind", "tenant")
			c.render(w, r, http.StatusUnauthorized, "signin", pre, "Sign in", d)
			return
		}
		in, _ := c.cfg.Instances.Lookup(r.Context(), d.Instance)
		s.Instance, s.Policy, s.KeyHash = in.Name, pol.KeyName, keyHash(r.PostFormValue("key"))
	}
	v, err := c.seal(s)
	if err != nil {
		c.fail(w, r, pre, err)
		return
	}
	c.setCookie(w, r, cookieSession, v, c.cfg.SessionTTL)
	c.clearCookie(w, r, cookiePre)
	next := d.Next
	if next == "" {
		next = "/instances"
		if !s.Operator {
			next = "/instances/" + url.PathEscape(s.Instance)
		}
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// tenantPolicy returns the policy of instance name one of whose keys is
// key, or nil.
func (c *Console) tenantPolicy(r *http.Request, name, key string) *model.AccessPolicy {
	key = strings.TrimSpace(key)
	if name == "" || key == "" {
		return nil
	}
	in, err := c.cfg.Instances.Lookup(r.Context(), name)
	if err != nil {
		return nil
	}
	var found *model.AccessPolicy
	for i := range in.AuthorizationPolicies {
		p := &in.AuthorizationPolicies[i]
		if subtle.ConstantTimeCompare([]byte(p.PrimaryKey), []byte(key)) == 1 ||
			subtle.ConstantTimeCompare([]byte(p.SecondaryKey), []byte(key)) == 1 {
			found = p
		}
	}
	return found
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, p *principal) error {
	c.clearCookie(w, r, cookieSession)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
	return nil
}

// safeNext keeps a post-sign-in destination only when it is a path of
// this console (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.HasPrefix(next, "/signin") {
		return ""
	}
	return next
}

// flash stores a one-time message for the next page (after a redirect).
func (c *Console) flash(w http.ResponseWriter, r *http.Request, msg string) {
	v, err := c.seal(msg)
	if err == nil {
		c.setCookie(w, r, cookieFlash, v, time.Minute)
	}
}

// takeFlash returns and clears the one-time message, if any.
func (c *Console) takeFlash(w http.ResponseWriter, r *http.Request) string {
	ck, err := r.Cookie(cookieFlash)
	if err != nil {
		return ""
	}
	c.clearCookie(w, r, cookieFlash)
	var msg string
	if c.unseal(ck.Value, &msg) != nil {
		return ""
	}
	return msg
}
