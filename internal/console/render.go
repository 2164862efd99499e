package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/dr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// pages are the parsed templates, by page name (templates/{name}.html,
// each executed inside templates/layout.html).
type pages map[string]*template.Template

// pageData is what every template gets.
type pageData struct {
	Title  string
	P      *principal
	Flash  string
	Region string // the node's region
	Inst   string // the instance of an instance page ("" elsewhere)
	D      any    // the page's own data
	// Refresh, when positive, reloads the page after that many seconds.
	Refresh int
}

func parsePages(cat *regions.Catalog) (pages, error) {
	funcs := template.FuncMap{
		"region": func(name string) string { return regionLabel(cat, name) },
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"ptime": func(t *time.Time) string {
			if t == nil || t.IsZero() {
				return "-"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"ms":        func(v float64) string { return fmt.Sprintf("%.0f ms", v) },
		"path":      url.PathEscape,
		"join":      strings.Join,
		"recordRow": newRecordRow,
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := pages{}
	for _, f := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", f)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// recordRow is what the "recordActions" template needs of one row of the
// enrollment or group list (sub: "enrollments" or "groups"; noun: what
// the delete confirmation calls the record).
type recordRow struct {
	Inst, CSRF, Sub, Noun, ID, Status string
}

func newRecordRow(pd pageData, sub, noun, id, status string) recordRow {
	return recordRow{Inst: pd.Inst, CSRF: pd.P.CSRF, Sub: sub, Noun: noun, ID: id, Status: status}
}

// regionLabel is "Display Name (name)", or name when the catalog does not
// know it.
func regionLabel(cat *regions.Catalog, name string) string {
	if name == "" {
		return "-"
	}
	if r, err := cat.Lookup(name); err == nil {
		return r.DisplayName + " (" + r.Name + ")"
	}
	return name
}

// render writes page with data inside the layout.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, p *principal, title string, data any) {
	c.renderInst(w, r, status, page, p, title, "", data)
}

func (c *Console) renderInst(w http.ResponseWriter, r *http.Request, status int, page string, p *principal, title, inst string, data any) {
	c.renderData(w, r, status, page, pageData{Title: title, P: p, Region: c.cfg.RegionName, Inst: inst, D: data})
}

// renderData writes page with pd inside the layout.
func (c *Console) renderData(w http.ResponseWriter, r *http.Request, status int, page string, pd pageData) {
	t := c.pages[page]
	if t == nil {
		c.log.Error("console: no template", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if pd.P != nil && (pd.P.Operator || pd.P.Instance != "") {
		pd.Flash = c.takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pd); err != nil {
		c.log.Error("console: template failed", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail renders err as an error page: its safe message, or a generic one
// with a tracking id that the log line carries too.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, p *principal, err error) {
	if name := r.PathValue("name"); name != "" && errors.Is(err, store.ErrFenced) && c.elsewhere(w, r, p, name) {
		return
	}
	status, msg := userError(err)
	if status >= 500 {
		id := randomID()[:12]
		c.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "tracking_id", id, "err", err)
		if msg == "" {
			msg = "The console could not complete this request (tracking id " + id + "); see the node's log."
		}
	}
	if p == nil {
		p = &principal{}
	}
	c.render(w, r, status, "error", p, "Error", msg)
}

// userError maps an error of the console's backends to a status and a
// message safe to show ("" for internal errors).
func userError(err error) (int, string) {
	var pe *pageError
	var ie *enrollment.InvalidError
	var ae *apierr.Error
	switch {
	case errors.As(err, &pe):
		return pe.Status, pe.Msg
	case instance.Message(err) != "":
		return instanceStatus(err), capitalize(instance.Message(err)) + "."
	case errors.As(err, &ie):
		return http.StatusBadRequest, capitalize(ie.Message)
	case errors.Is(err, enrollment.ErrNotFound), errors.Is(err, enrollment.ErrInstanceNotFound):
		return http.StatusNotFound, capitalize(strings.TrimPrefix(err.Error(), "enrollment: ")) + "."
	case errors.Is(err, enrollment.ErrExists):
		return http.StatusConflict, "A record with that id exists already."
	case errors.Is(err, enrollment.ErrPrecondition):
		return http.StatusPreconditionFailed, "The record changed meanwhile: reload and try again."
	case errors.Is(err, store.ErrFenced):
		return http.StatusConflict, "This instance does not accept writes in this region (it is not primary here, or is being failed over)."
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "Storage is busy or unavailable right now; try again in a moment."
	case errors.Is(err, dr.ErrRefused), errors.Is(err, dr.ErrInvalid), errors.Is(err, dr.ErrNotFound),
		errors.Is(err, dr.ErrUnavailable):
		if errors.As(dr.APIError(err), &ae) {
			return ae.Status, capitalize(ae.Message)
		}
	}
	return http.StatusInternalServerError, ""
}

func instanceStatus(err error) int {
	switch {
	case errors.Is(err, instance.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, instance.ErrExists):
		return http.StatusConflict
	case errors.Is(err, instance.ErrPrecondition):
		return http.StatusPreconditionFailed
	}
	return http.StatusBadRequest
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// finish redirects after a successful POST, with msg for the next page.
func (c *Console) finish(w http.ResponseWriter, r *http.Request, to, msg string) error {
	if msg != "" {
		c.flash(w, r, msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}
