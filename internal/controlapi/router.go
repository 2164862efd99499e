package controlapi

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// params are the {name} segments of a matched route, unescaped.
type params map[string]string

// handlerFunc serves one route; a returned error is written by writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p params) error

// route is one method + path pattern. Literal segments match
// case-insensitively (ARM path segments are case-insensitive); {name}
// segments capture one non-empty segment.
type route struct {
	method  string
	pattern []string
	arm     bool // requires api-version
	fn      handlerFunc
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// match reports whether segs (escaped) match the route's pattern, and the
// captured params.
func (rt *route) match(segs []string) (params, bool) {
	if len(segs) != len(rt.pattern) {
		return nil, false
	}
	var p params
	for i, pat := range rt.pattern {
		if strings.HasPrefix(pat, "{") {
			v, err := url.PathUnescape(segs[i])
			if err != nil || v == "" {
				return nil, false
			}
			if p == nil {
				p = params{}
			}
			p[pat[1:len(pat)-1]] = v
			continue
		}
		if !strings.EqualFold(pat, segs[i]) {
			return nil, false
		}
	}
	return p, true
}

// router finds the route of a request.
type router struct {
	routes []*route
}

func (rt *router) add(method, pattern string, arm bool, fn handlerFunc) {
	rt.routes = append(rt.routes, &route{method: method, pattern: splitPath(pattern), arm: arm, fn: fn})
}

// find returns the route for r and its params. When the path matches but
// the method does not, it returns the allowed methods instead.
func (rt *router) find(r *http.Request) (*route, params, []string) {
	segs := splitPath(r.URL.EscapedPath())
	var allowed []string
	for _, x := range rt.routes {
		p, ok := x.match(segs)
		if !ok {
			continue
		}
		if x.method == r.Method {
			return x, p, nil
		}
		allowed = append(allowed, x.method)
	}
	sort.Strings(allowed)
	return nil, nil, allowed
}
