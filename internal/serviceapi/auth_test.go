package serviceapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/enrollment/enrollmenttest"
	"github.com/opendps/opendps/internal/model"
)

func TestAuthAndInstanceRouting(t *testing.T) {
	e := newEnv(t)
	if w := e.do(req{method: "PUT", path: "/enrollments/a1", body: symBody("a1")}); w.Code != 200 {
		t.Fatalf("setup PUT: %d %s", w.Code, w.Body)
	}
	pol := func(name string) *model.AccessPolicy { return e.in.Model.Policy(name) }
	read := pol(enrollmenttest.ReadPolicy)
	owner := pol(model.OwnerPolicy)
	tests := []struct {
		name   string
		r      req
		status int
	}{
		{"owner", req{method: "GET", path: "/enrollments/a1"}, 200},
		{"secondary key", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, owner.SecondaryKey, owner.KeyName, time.Hour)}, 200},
		{"host without port", req{method: "GET", path: "/enrollments/a1", auth: token(t, strings.TrimSuffix(e.host, ":8443"), owner.PrimaryKey, owner.KeyName, time.Hour)}, 200},
		{"sr path prefix", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host+"/enrollments", owner.PrimaryKey, owner.KeyName, time.Hour)}, 200},
		{"case-insensitive host", req{method: "GET", path: "/enrollments/a1", host: strings.ToUpper(e.host)}, 200},
		{"read policy reads", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 200},
		{"read policy query", req{method: "POST", path: "/enrollments/query", body: `{"query":"*"}`, auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 200},

		{"missing header", req{method: "GET", path: "/enrollments/a1", noAuth: true}, 401},
		{"malformed", req{method: "GET", path: "/enrollments/a1", auth: "SharedAccessSignature garbage"}, 401},
		{"bearer", req{method: "GET", path: "/enrollments/a1", auth: "Bearer abc"}, 401},
		{"wrong key", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, enrollmenttest.RandomKey(), owner.KeyName, time.Hour)}, 401},
		{"expired", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, owner.PrimaryKey, owner.KeyName, -time.Hour)}, 401},
		{"unknown skn", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, owner.PrimaryKey, "nobody", time.Hour)}, 401},
		{"no skn", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, owner.PrimaryKey, "", time.Hour)}, 401},
		{"other host", req{method: "GET", path: "/enrollments/a1", auth: token(t, "other.localhost:8443", owner.PrimaryKey, owner.KeyName, time.Hour)}, 401},
		{"other path", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host+"/registrations", owner.PrimaryKey, owner.KeyName, time.Hour)}, 401},
		{"read policy writes", req{method: "PUT", path: "/enrollments/a2", body: symBody("a2"), auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 401},
		{"read policy deletes", req{method: "DELETE", path: "/enrollments/a1", auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 401},
		{"read policy bulk", req{method: "POST", path: "/enrollments", body: `{"mode":"delete","enrollments":[{"registrationId":"a1"}]}`, auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 401},
		{"read policy registrations", req{method: "GET", path: "/registrations/a1", auth: token(t, e.host, read.PrimaryKey, read.KeyName, time.Hour)}, 401},
		{"reg read policy enrollments", req{method: "GET", path: "/enrollments/a1", auth: token(t, e.host, pol(enrollmenttest.RegReadPolicy).PrimaryKey, enrollmenttest.RegReadPolicy, time.Hour)}, 401},

		{"unknown instance", req{method: "GET", path: "/enrollments/a1", host: "nosuch.localhost:8443"}, 404},
		{"foreign domain", req{method: "GET", path: "/enrollments/a1", host: "svc.example.com"}, 404},
		{"bare domain", req{method: "GET", path: "/enrollments/a1", host: "localhost:8443"}, 404},
		{"no api-version", req{method: "GET", path: "/enrollments/a1", noAPIVersion: true}, 400},
		{"bad api-version", req{method: "GET", path: "/enrollments/a1?api-version=latest", noAPIVersion: true}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot()
			w := e.do(tt.r)
			if tt.status == 200 {
				if w.Code != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
				}
				return
			}
			wantError(t, w, tt.status)
			e.unchanged(before)
		})
	}
	// Preview api-versions are accepted.
	if w := e.do(req{method: "GET", path: "/enrollments/a1?api-version=2021-11-01-preview", noAPIVersion: true}); w.Code != 200 {
		t.Errorf("preview api-version: %d", w.Code)
	}
}

func TestInstanceCache(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	h, err := New(Config{Store: e.st, ServiceDomain: "LocalHost.", InstanceCacheTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	if w := e.do(req{method: "GET", path: "/enrollments/x"}); w.Code != 404 {
		t.Fatalf("first: %d", w.Code)
	}
	if len(h.cache) != 1 {
		t.Errorf("cache holds %d instances, want 1", len(h.cache))
	}
	if _, err := New(Config{Store: e.st, ServiceDomain: "localhost:8443"}); err == nil {
		t.Error("New accepted a domain with a port")
	}
	if _, err := New(Config{ServiceDomain: "localhost"}); err == nil {
		t.Error("New accepted no store")
	}
}
