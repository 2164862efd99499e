package httpfront

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
)

// routeKind is the device operation a request addresses (§2.1).
type routeKind int

const (
	routeUnknown routeKind = iota
	routeRegister
	routeOperationStatus
	routeRegistrationStatus
)

// String is the route's metrics label.
func (k routeKind) String() string {
	switch k {
	case routeRegister:
		return "register"
	case routeOperationStatus:
		return "operation_status"
	case routeRegistrationStatus:
		return "registration_status"
	}
	return "unknown"
}

// method is the HTTP method the route answers.
func (k routeKind) method() string {
	switch k {
	case routeRegister:
		return http.MethodPut
	case routeOperationStatus:
		return http.MethodGet
	case routeRegistrationStatus:
		return http.MethodPost
	}
	return ""
}

// route is a parsed request path; the ids are percent-decoded but not yet
// validated (see validate.go).
type route struct {
	kind  routeKind
	scope string
	regID string
	opID  string // routeOperationStatus only
}

// parseRoute maps a method and an escaped path to a route: an unknown
// shape is 404, a known shape with another method 405 (with Allow), a
// segment that does not percent-decode 400. The kind is set whenever the
// shape matched, so metrics can label 405s and 400s by route.
func parseRoute(method, escapedPath string) (route, error) {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	rt := route{kind: shape(segs)}
	if rt.kind == routeUnknown {
		return rt, noRoute(method, escapedPath)
	}
	if want := rt.kind.method(); method != want {
		e := apierr.New(apierr.CodeMethodNotAllowed, "Method %s is not allowed here; use %s.", clip(method), want)
		e.Header = http.Header{headerAllow: {want}}
		return rt, e
	}
	ids := []*string{&rt.scope, &rt.regID}
	if rt.kind == routeOperationStatus {
		ids = append(ids, &rt.opID)
	}
	raw := []string{segs[0], segs[2], segs[len(segs)-1]}
	for i, p := range ids {
		d, err := url.PathUnescape(raw[i])
		if err != nil {
			return rt, apierr.New(apierr.CodeBadRequest, "Path segment %q is not valid percent-encoding.", clip(raw[i]))
		}
		*p = d
	}
	return rt, nil
}

// shape classifies the path segments (escaped) without looking at ids.
func shape(segs []string) routeKind {
	for _, s := range segs {
		if s == "" {
			return routeUnknown
		}
	}
	if len(segs) < 3 || !strings.EqualFold(segs[1], segRegistrations) {
		return routeUnknown
	}
	switch {
	case len(segs) == 3:
		return routeRegistrationStatus
	case len(segs) == 4 && strings.EqualFold(segs[3], segRegister):
		return routeRegister
	case len(segs) == 5 && strings.EqualFold(segs[3], segOperations):
		return routeOperationStatus
	}
	return routeUnknown
}

func noRoute(method, path string) error {
	return apierr.New(apierr.CodeNotFound, "No device API route for %s %q.", clip(method), clip(path))
}
