package controlapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestARMErrorShape: ARM clients read {"error":{"code","message"}} first
// (the JS createRestError takes body.error ?? body), so code must be a
// string naming the status, and the DPS fields stay beside it.
func TestARMErrorShape(t *testing.T) {
	e := newEnv(t)
	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{http.MethodGet, armPath("nothing-here"), "", http.StatusNotFound, "NotFound"},
		{http.MethodPut, armPath("west-residency"), `{"location":"westeurope","properties":{"enableDataResidency":true}}`, http.StatusBadRequest, "BadRequest"},
		{http.MethodGet, armPath("x") + "?api-version=bad", "", http.StatusBadRequest, "BadRequest"},
		{http.MethodPost, armPath("x", "skus"), "", http.StatusMethodNotAllowed, "MethodNotAllowed"},
	} {
		st, h, b := e.raw(tt.method, tt.path, tt.body)
		wantStatus(t, st, tt.status, b)
		arm, _ := b["error"].(map[string]any)
		if arm["code"] != tt.code {
			t.Errorf("%s %s: error.code = %v, want %q", tt.method, tt.path, arm["code"], tt.code)
		}
		if got := h.Get("x-ms-request-id"); got == "" || got != b["trackingId"] {
			t.Errorf("%s %s: x-ms-request-id %q, trackingId %v: want equal", tt.method, tt.path, got, b["trackingId"])
		}
	}
	_, _, b := e.raw(http.MethodPut, armPath("west-residency"), `{"location":"westeurope","properties":{"enableDataResidency":true}}`)
	msg := b["error"].(map[string]any)["message"].(string)
	for _, want := range []string{"Brazil South", "Southeast Asia"} {
		if !strings.Contains(msg, want) {
			t.Errorf("residency refusal %q does not name %s", msg, want)
		}
	}
}

// TestLongRunningOperationHeaders: a create answers 201 with
// Azure-AsyncOperation and a delete 202 with Azure-AsyncOperation and
// Location, both naming an operation result (with the request's
// api-version and asyncinfo=true) that has succeeded; the ARM pollers
// follow them.
func TestLongRunningOperationHeaders(t *testing.T) {
	e := newEnv(t)
	const ver = "2026-08-31"
	follow := func(what, u string) {
		t.Helper()
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" || pu.Host != strings.TrimPrefix(e.srv.URL, "http://") {
			t.Fatalf("%s: operation URL %q is not an absolute URL of this server", what, u)
		}
		if q := pu.Query(); q.Get("api-version") != ver || q.Get("asyncinfo") != "true" {
			t.Errorf("%s: operation URL %q: want api-version=%s and asyncinfo=true", what, u, ver)
		}
		if !strings.Contains(strings.ToLower(pu.Path), "/provisioningservices/lro-inst/operationresults/") {
			t.Errorf("%s: operation URL path %q", what, pu.Path)
		}
		st, _, b := e.raw(http.MethodGet, pu.RequestURI(), "")
		if st != http.StatusOK || b["status"] != "Succeeded" {
			t.Errorf("%s: GET operation = %d %v, want 200 Succeeded", what, st, b)
		}
	}
	body := `{"location":"westeurope","sku":{"name":"S1","capacity":1}}`
	st, h, b := e.raw(http.MethodPut, armPath("lro-inst")+"?api-version="+ver, body)
	wantStatus(t, st, http.StatusCreated, b)
	if b["properties"].(map[string]any)["provisioningState"] != "Succeeded" {
		t.Errorf("create body: %v", b)
	}
	follow("create", h.Get("Azure-AsyncOperation"))
	if h.Get("Retry-After") != "0" {
		t.Errorf("create Retry-After = %q, want 0", h.Get("Retry-After"))
	}

	st, h, b = e.raw(http.MethodPut, armPath("lro-inst")+"?api-version="+ver, body)
	wantStatus(t, st, http.StatusOK, b)
	if h.Get("Azure-AsyncOperation") != "" {
		t.Errorf("update answered with an operation header %q", h.Get("Azure-AsyncOperation"))
	}

	st, h, b = e.raw(http.MethodDelete, armPath("lro-inst")+"?api-version="+ver, "")
	wantStatus(t, st, http.StatusAccepted, b)
	follow("delete Azure-AsyncOperation", h.Get("Azure-AsyncOperation"))
	follow("delete Location", h.Get("Location"))
	st, _, b = e.raw(http.MethodGet, armPath("lro-inst"), "")
	wantStatus(t, st, http.StatusNotFound, b)
}
