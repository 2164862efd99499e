package apierr

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type decodeTarget struct {
	Name        string            `json:"name"`
	Count       int32             `json:"count"`
	Enabled     bool              `json:"enabled"`
	Tags        map[string]string `json:"tags"`
	Hubs        []string          `json:"hubs"`
	Attestation struct {
		Type string `json:"type"`
	} `json:"attestation"`
}

func newRequest(body io.Reader, contentType string, contentLength int64) *http.Request {
	r := httptest.NewRequest("PUT", "/enrollments/x", body)
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if contentLength != 0 {
		r.ContentLength = contentLength
	}
	return r
}

// endless yields b up to 16 MiB (enough to tell a bounded reader from an
// unbounded one without hanging when the bound is broken) and counts what
// it gave.
type endless struct {
	b byte
	n int64
}

func (r *endless) Read(p []byte) (int, error) {
	if r.n >= 16<<20 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), 16<<20-r.n)]
	for i := range p {
		p[i] = r.b
	}
	r.n += int64(len(p))
	return len(p), nil
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestDecodeJSON(t *testing.T) {
	const max = 64
	tests := []struct {
		name        string
		body        string
		contentType string
		length      int64 // 0: as httptest sets it; -1: unknown (streaming)
		required    bool
		wantStatus  int      // 0: success
		wantMsg     []string // substrings of the message
	}{
		{"ok", `{"name":"a","count":2}`, "application/json", 0, true, 0, nil},
		{"charset", `{"name":"a"}`, "application/json; charset=utf-8", 0, true, 0, nil},
		{"no content type", `{"name":"a"}`, "", 0, true, 0, nil},
		{"+json", `{"name":"a"}`, "application/merge-patch+json", 0, true, 0, nil},
		{"text/json", `{"name":"a"}`, "text/json", 0, true, 0, nil},
		{"unknown fields ignored", `{"name":"a","future":{"x":1}}`, "application/json", 0, true, 0, nil},
		{"exactly max", `{"name":"` + strings.Repeat("a", max-11) + `"}`, "application/json", 0, true, 0, nil},
		{"over max by content-length", `{"name":"` + strings.Repeat("a", max) + `"}`, "application/json", 0, true, 413, []string{"64 bytes"}},
		{"content-length lies high", `{}`, "application/json", max + 1, true, 413, nil},
		{"over max streaming", `{"name":"` + strings.Repeat("a", max) + `"}`, "application/json", -1, true, 413, []string{"64 bytes"}},
		{"text/plain", `{"name":"a"}`, "text/plain", 0, true, 415, []string{"text/plain", "application/json"}},
		{"form", `name=a`, "application/x-www-form-urlencoded", 0, true, 415, nil},
		{"bad media type", `{}`, "application/json; =", 0, true, 415, nil},
		{"wrong type", `{"name":5}`, "application/json", 0, true, 400, []string{`"name"`, "string", "number"}},
		{"wrong type int", `{"count":"x"}`, "application/json", 0, true, 400, []string{`"count"`, "number", "string"}},
		{"wrong type bool", `{"enabled":1}`, "application/json", 0, true, 400, []string{`"enabled"`, "boolean"}},
		{"wrong type object", `{"tags":[]}`, "application/json", 0, true, 400, []string{`"tags"`, "object", "array"}},
		{"wrong type array", `{"hubs":"h"}`, "application/json", 0, true, 400, []string{`"hubs"`, "array"}},
		{"wrong type nested", `{"attestation":{"type":7}}`, "application/json", 0, true, 400, []string{`"attestation.type"`}},
		{"wrong top-level type", `[1,2]`, "application/json", 0, true, 400, []string{`"(body)"`, "object"}},
		{"overflow", `{"count":99999999999}`, "application/json", 0, true, 400, []string{`"count"`}},
		{"malformed", `{"name":`, "application/json", 0, true, 400, []string{"Malformed JSON"}},
		{"malformed syntax", `{"name" "a"}`, "application/json", 0, true, 400, []string{"Malformed JSON at offset"}},
		{"trailing garbage", `{} x`, "application/json", 0, true, 400, []string{"Malformed JSON"}},
		{"empty required", ``, "application/json", 0, true, 400, []string{"required"}},
		{"blank required", " \n\t", "application/json", 0, true, 400, []string{"required"}},
		{"empty optional", ``, "application/json", 0, false, 0, nil},
		{"blank optional", "  \r\n", "", 0, false, 0, nil},
		{"null", `null`, "application/json", 0, true, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.length == -1 {
				body = io.MultiReader(body) // hides the length from httptest
			}
			r := newRequest(body, tt.contentType, tt.length)
			if tt.length == -1 && r.ContentLength != -1 {
				t.Fatalf("ContentLength = %d, want -1 (streaming)", r.ContentLength)
			}
			var v decodeTarget
			err := DecodeJSON(r, max, &v, tt.required)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d (%s)", e.Status, tt.wantStatus, e.Message)
			}
			if e.Code/1000 != e.Status {
				t.Errorf("Code %d does not match Status %d", e.Code, e.Status)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(e.Message, s) {
					t.Errorf("message %q does not contain %q", e.Message, s)
				}
			}
		})
	}
}

func TestDecodeJSONValues(t *testing.T) {
	r := newRequest(strings.NewReader(`{"name":"a","count":3,"enabled":true,"tags":{"k":"v"},"hubs":["h1"],"attestation":{"type":"x509"},"extra":1}`), "application/json", 0)
	var got decodeTarget
	if err := DecodeJSON(r, 0, &got, true); err != nil {
		t.Fatal(err)
	}
	if got.Name != "a" || got.Count != 3 || !got.Enabled || got.Tags["k"] != "v" || len(got.Hubs) != 1 || got.Attestation.Type != "x509" {
		t.Errorf("decoded %+v", got)
	}

	// An optional empty body leaves v alone.
	v := decodeTarget{Name: "keep"}
	if err := DecodeJSON(newRequest(http.NoBody, "", 0), 0, &v, false); err != nil || v.Name != "keep" {
		t.Errorf("empty optional body: v.Name = %q, err = %v; want %q, nil", v.Name, err, "keep")
	}
}

// TestDecodeJSONStreamingStopsAtLimit sends a huge body without a
// Content-Length: DecodeJSON must answer 413 after reading about max bytes.
func TestDecodeJSONStreamingStopsAtLimit(t *testing.T) {
	src := &endless{b: ' '}
	r := newRequest(src, "application/json", -1)
	var v decodeTarget
	err := DecodeJSON(r, 1024, &v, true)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("err = %v, want a 413 *Error", err)
	}
	if src.n > 64<<10 {
		t.Errorf("read %d bytes of a huge body with a limit of 1024", src.n)
	}
}

func TestDecodeJSONDefaultLimit(t *testing.T) {
	for _, max := range []int64{0, -1} {
		big := `{"name":"` + strings.Repeat("a", MaxBody) + `"}`
		var v decodeTarget
		err := DecodeJSON(newRequest(strings.NewReader(big), "application/json", -1), max, &v, true)
		var e *Error
		if !errors.As(err, &e) || e.Status != 413 {
			t.Errorf("max %d: err = %v, want 413 at MaxBody", max, err)
		}
		ok := `{"name":"` + strings.Repeat("a", MaxBody-20) + `"}`
		if err := DecodeJSON(newRequest(strings.NewReader(ok), "application/json", 0), max, &v, true); err != nil {
			t.Errorf("max %d: body under MaxBody: %v", max, err)
		}
	}
}

func TestDecodeJSONReadError(t *testing.T) {
	var v decodeTarget
	err := DecodeJSON(newRequest(failingReader{}, "application/json", -1), 0, &v, true)
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 {
		t.Fatalf("err = %v, want a 400 *Error", err)
	}
	if strings.Contains(e.Message, "connection reset") {
		t.Errorf("message %q leaks the read error", e.Message)
	}
}

func TestDecodeBytes(t *testing.T) {
	var v decodeTarget
	if err := DecodeBytes([]byte(`{"name":"x"}`), &v); err != nil || v.Name != "x" {
		t.Errorf("DecodeBytes = %v, Name %q", err, v.Name)
	}
	err := DecodeBytes([]byte(`{"name":1}`), &v)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBadArgument || !strings.Contains(e.Message, `"name"`) {
		t.Errorf("DecodeBytes wrong type: %v", err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"name":"a","count":1,"tags":{"k":"v"},"hubs":["x"],"attestation":{"type":"tpm"}}`), "application/json", true)
	f.Add([]byte(`{"name":5}`), "application/json; charset=utf-8", true)
	f.Add([]byte(`[`), "", false)
	f.Add([]byte(``), "text/plain", false)
	f.Add([]byte(`{"count":1e400}`), "text/json", true)
	f.Add([]byte("\"\\ud800\""), "application/x+json", true)
	f.Fuzz(func(t *testing.T, body []byte, contentType string, required bool) {
		const max = 512
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		var v decodeTarget
		err := DecodeJSON(r, max, &v, required)
		if err == nil {
			if len(body) > max {
				t.Fatalf("accepted %d bytes over a %d limit", len(body), max)
			}
			if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("err = %v (%T), want *Error", err, err)
		}
		switch e.Status {
		case 400, 413, 415:
		default:
			t.Fatalf("Status = %d, want 400, 413 or 415", e.Status)
		}
		if e.Code/1000 != e.Status {
			t.Fatalf("Code %d does not match Status %d", e.Code, e.Status)
		}
		if e.Status == 413 && len(body) <= max {
			t.Fatalf("413 for %d bytes under a %d limit", len(body), max)
		}
		// The error must render as a valid DPS body.
		rec := httptest.NewRecorder()
		Write(rec, r, nil, err)
		var b Body
		if jerr := json.Unmarshal(rec.Body.Bytes(), &b); jerr != nil || b.ErrorCode != e.Code {
			t.Fatalf("rendered %q: %v", rec.Body, jerr)
		}
	})
}
