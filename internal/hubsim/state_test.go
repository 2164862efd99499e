package hubsim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestStateFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "hubs.json")
	h := NewHubConfig("hub1.localhost")
	s1, err := New(Config{Hubs: []HubConfig{h}, StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, "hub1.localhost", h.Key, "iothubowner", time.Now().Add(time.Hour))
	for _, r := range []req{
		{method: "PUT", path: "/devices/d1", body: `{"deviceId":"d1","capabilities":{"iotEdge":true}}`},
		{method: "PATCH", path: "/twins/d1", body: `{"tags":{"site":"x"},"properties":{"desired":{"n":1}}}`},
		{method: "PUT", path: "/devices/d2", body: `{}`},
		{method: "DELETE", path: "/devices/d2"},
	} {
		r.host, r.auth = "hub1.localhost", tok
		if w := r.do(s1); w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600", fi, err)
	}

	// Writes are batched; a restart (Server.Close) flushes them.
	if err := s1.Flush(); err != nil {
		t.Fatal(err)
	}
	// Restart without listing the hub: it comes back from the file.
	s2, err := New(Config{StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.Hubs(); len(got) != 1 || got[0] != h {
		t.Fatalf("restored hubs = %+v, want %+v", got, h)
	}
	d1, _ := s1.Device("hub1.localhost", "d1")
	d2, ok := s2.Device("hub1.localhost", "d1")
	if !ok || !reflect.DeepEqual(d1, d2) {
		t.Errorf("restored device = %+v, want %+v", d2, d1)
	}
	t1, _ := s1.Twin("hub1.localhost", "d1")
	t2, _ := s2.Twin("hub1.localhost", "d1")
	if !reflect.DeepEqual(t1, t2) {
		t.Errorf("restored twin = %+v, want %+v", t2, t1)
	}
	if _, ok := s2.Device("hub1.localhost", "d2"); ok {
		t.Errorf("deleted device came back")
	}
	// New etags after restart must not repeat old ones.
	w := req{method: "PUT", host: "hub1.localhost", path: "/devices/d3", auth: tok, body: `{}`}.do(s2)
	d3, _ := s2.Device("hub1.localhost", "d3")
	if w.Code != 200 || d3.ETag == d1.ETag || d3.GenerationID <= d1.GenerationID {
		t.Errorf("after restart: %d, etag %q (d1 %q), generation %q (d1 %q)", w.Code, d3.ETag, d1.ETag, d3.GenerationID, d1.GenerationID)
	}

	s2.Flush()
	// A configured hub's key replaces the stored one.
	h2 := NewHubConfig("hub1.localhost")
	s3, err := New(Config{Hubs: []HubConfig{h2}, StateFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if got := s3.Hubs(); len(got) != 1 || got[0].Key != h2.Key {
		t.Errorf("hubs = %+v, want the configured key", got)
	}
	if _, ok := s3.Device("hub1.localhost", "d3"); !ok {
		t.Errorf("identities lost when the key changed")
	}
}

func TestStateFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":     "{",
		"version":     `{"version":99,"hubs":[]}`,
		"invalid hub": `{"version":1,"hubs":[{"hostName":"a:1","key":"c2VjcmV0"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".json")
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := New(Config{StateFile: p}); !errors.Is(err, ErrState) {
				t.Errorf("New = %v, want ErrState", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	ok := NewHubConfig("a.localhost")
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, true},
		{"one", Config{Hubs: []HubConfig{ok}}, true},
		{"port", Config{Hubs: []HubConfig{{HostName: "a:1", Key: ok.Key}}}, false},
		{"no host", Config{Hubs: []HubConfig{{Key: ok.Key}}}, false},
		{"bad key", Config{Hubs: []HubConfig{{HostName: "a", Key: "!"}}}, false},
		{"duplicate", Config{Hubs: []HubConfig{ok, {HostName: "A.localhost", Key: ok.Key}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if got, want := ok.ConnectionStringPort(8443), "HostName=a.localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey="+ok.Key; got != want {
		t.Errorf("ConnectionStringPort = %q, want %q", got, want)
	}
}
