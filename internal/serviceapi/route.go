package serviceapi

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
)

// Path segments of the service API (spec/dps-protocol.md §6.1), matched
// case-insensitively: the Node SDK writes /enrollmentgroups/... for
// attestation mechanisms and /enrollmentGroups/... elsewhere.
const (
	segEnrollments   = "enrollments"
	segGroups        = "enrollmentgroups"
	segRegistrations = "registrations"
	segQuery         = "query"
	segAttestation   = "attestationmechanism"
)

// resource is the collection a request addresses.
type resource int

const (
	resEnrollment resource = iota + 1
	resGroup
	resRegistration
)

// op is what a request does.
type op int

const (
	opGet op = iota + 1
	opPut
	opDelete
	opAttestation // POST .../{id}/attestationmechanism
	opBulk        // POST /enrollments, /enrollmentGroups (trailing slash or not)
	opQuery       // POST .../query; for registrations id is the group
)

// route is a parsed request path.
type route struct {
	res resource
	op  op
	id  string // URL-decoded; "" for bulk and enrollment queries
}

// right is the access right the route needs.
func (rt route) right() string {
	switch {
	case rt.res == resRegistration && rt.op == opDelete:
		return model.RightRegistrationStatusWrite
	case rt.res == resRegistration:
		return model.RightRegistrationStatusRead
	case rt.op == opPut || rt.op == opDelete || rt.op == opBulk:
		return model.RightEnrollmentWrite
	}
	return model.RightEnrollmentRead
}

// parseRoute maps a method and an escaped path to a route. Unknown paths
// are 404, known paths with another method 405 (with Allow), ids that do
// not URL-decode 400.
func parseRoute(method, escapedPath string) (route, error) {
	trimmed := strings.Trim(escapedPath, "/")
	segs := strings.Split(trimmed, "/")
	if trimmed == "" || len(segs) > 3 {
		return route{}, noRoute(escapedPath)
	}
	var rt route
	switch strings.ToLower(segs[0]) {
	case segEnrollments:
		rt.res = resEnrollment
	case segGroups:
		rt.res = resGroup
	case segRegistrations:
		rt.res = resRegistration
	default:
		return route{}, noRoute(escapedPath)
	}
	for i, s := range segs[1:] {
		if s == "" {
			return route{}, noRoute(escapedPath)
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return route{}, apierr.New(apierr.CodeBadRequest, "Path segment %d is not valid percent-encoding.", i+2)
		}
		segs[i+1] = d
	}
	switch len(segs) {
	case 1:
		return rt.collection(method, escapedPath)
	case 2:
		return rt.item(method, segs[1])
	}
	return rt.sub(method, segs[1], segs[2], escapedPath)
}

// collection routes /enrollments and /enrollmentGroups (bulk).
func (rt route) collection(method, path string) (route, error) {
	if rt.res == resRegistration {
		return route{}, noRoute(path)
	}
	rt.op = opBulk
	return rt, allow(method, http.MethodPost)
}

// item routes /{collection}/{id} and /{collection}/query.
func (rt route) item(method, id string) (route, error) {
	if rt.res != resRegistration && strings.EqualFold(id, segQuery) && method == http.MethodPost {
		rt.op = opQuery
		return rt, nil
	}
	rt.id = id
	methods := []string{http.MethodGet, http.MethodPut, http.MethodDelete}
	if rt.res == resRegistration {
		methods = []string{http.MethodGet, http.MethodDelete}
	}
	switch method {
	case http.MethodGet:
		rt.op = opGet
	case http.MethodPut:
		rt.op = opPut
	case http.MethodDelete:
		rt.op = opDelete
	}
	return rt, allow(method, methods...)
}

// sub routes /{collection}/{id}/attestationmechanism and
// /registrations/{groupId}/query.
func (rt route) sub(method, id, leaf, path string) (route, error) {
	rt.id = id
	switch {
	case rt.res != resRegistration && strings.EqualFold(leaf, segAttestation):
		rt.op = opAttestation
	case rt.res == resRegistration && strings.EqualFold(leaf, segQuery):
		rt.op = opQuery
	default:
		return route{}, noRoute(path)
	}
	return rt, allow(method, http.MethodPost)
}

// allow returns 405 unless method is one of methods.
func allow(method string, methods ...string) error {
	for _, m := range methods {
		if method == m {
			return nil
		}
	}
	e := apierr.New(apierr.CodeMethodNotAllowed, "Method %s is not allowed here.", method)
	e.Header = http.Header{"Allow": {strings.Join(methods, ", ")}}
	return e
}

func noRoute(path string) error {
	if len(path) > 200 {
		path = path[:200] + "..."
	}
	return apierr.New(apierr.CodeNotFound, "No service API route for %q.", path)
}
