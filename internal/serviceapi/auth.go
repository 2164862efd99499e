package serviceapi

import (
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// apiVersionRE is what a syntactically valid api-version looks like:
// 2021-10-01, 2021-11-01-preview, ... (spec/dps-protocol.md §1.3).
var apiVersionRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-[A-Za-z0-9.]{1,32})?$`)

// checkAPIVersion requires the api-version query parameter. Any
// syntactically valid value is accepted and none changes the JSON shape.
func checkAPIVersion(r *http.Request) error {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return apierr.New(apierr.CodeInvalidAPIVersion, "The api-version query parameter is required.")
	}
	if !apiVersionRE.MatchString(v) {
		return apierr.New(apierr.CodeInvalidAPIVersion, "api-version %q is not a valid API version.", truncate(v))
	}
	return nil
}

// unauthorized is the answer to every authentication or authorization
// failure: DPS answers 401 for a bad token and for a policy lacking the
// right alike (how-to-troubleshoot-dps lists no 403 for the service API,
// and the Node SDK maps 403 to TooManyDevicesError).
func unauthorized(format string, args ...any) error {
	return apierr.New(apierr.CodeUnauthorized, format, args...)
}

// authorize checks the SAS token of r against the policies of in and
// requires right. The signature covers sr exactly as sent; the decoded sr
// must be the request host (with or without port) or a segment prefix of
// host+path; the token must not have expired (5 min skew); skn must name a
// policy whose primary or secondary key signed the token.
func (h *Handler) authorize(r *http.Request, in *model.Instance, right string) error {
	hdr := r.Header.Get("Authorization")
	if hdr == "" {
		return unauthorized("The Authorization header is missing; send a SharedAccessSignature token.")
	}
	tok, err := sas.Parse(hdr)
	if err != nil {
		return unauthorized("The SAS token is malformed: %s.", strings.TrimPrefix(err.Error(), "sas: "))
	}
	if err := tok.CheckExpiry(h.now(), sas.DefaultSkew); err != nil {
		return unauthorized("The SAS token has expired.")
	}
	pol := in.Policy(tok.KeyName)
	if tok.KeyName == "" || pol == nil {
		return unauthorized("The SAS token names no shared access policy of this provisioning service (skn).")
	}
	if !tok.VerifyBase64(pol.PrimaryKey) && !tok.VerifyBase64(pol.SecondaryKey) {
		return unauthorized("The SAS token signature does not match the keys of policy %q.", pol.KeyName)
	}
	if !audienceMatches(tok.Resource, r.Host, r.URL.Path) {
		return unauthorized("The SAS token resource (sr) does not match this provisioning service.")
	}
	if !hasRight(pol.Rights, right) {
		return unauthorized("Policy %q does not grant %s, which this operation requires.", pol.KeyName, right)
	}
	return nil
}

// audienceMatches reports whether the decoded sr equals the host (with or
// without its port) or is a segment prefix of host+path, case-insensitively.
func audienceMatches(sr, host, path string) bool {
	sr = strings.TrimSuffix(strings.ToLower(sr), "/")
	sr = strings.TrimPrefix(sr, "https://")
	if sr == "" {
		return false
	}
	host = strings.ToLower(host)
	for _, h := range []string{host, hostOnly(host)} {
		target := h + strings.ToLower(path)
		if sr == h || sr == strings.TrimSuffix(target, "/") || strings.HasPrefix(target, sr+"/") {
			return true
		}
	}
	return false
}

// hasRight reports whether a comma-separated rights list holds right.
func hasRight(rights, right string) bool {
	for _, r := range strings.Split(rights, ",") {
		if strings.EqualFold(strings.TrimSpace(r), right) {
			return true
		}
	}
	return false
}

// hostOnly strips a port from a Host header value.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return host
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
