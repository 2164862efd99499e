package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v, want nil", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; nil = valid
	}{
		{"default", func(c *Config) {}, nil},
		{"no name", func(c *Config) { c.Name = "" }, []string{"name"}},
		{"no region", func(c *Config) { c.Region = "" }, []string{"region"}},
		{"no data dir", func(c *Config) { c.DataDir = "" }, []string{"dataDir"}},
		{"device addr no port", func(c *Config) { c.DeviceAddr = "8443" }, []string{"deviceAddr", `"8443"`}},
		{"device addr port out of range", func(c *Config) { c.DeviceAddr = ":99999" }, []string{"deviceAddr"}},
		{"device addr bad port", func(c *Config) { c.DeviceAddr = "127.0.0.1:x1" }, []string{"deviceAddr"}},
		{"service addr", func(c *Config) { c.ServiceAddr = "" }, []string{"serviceAddr"}},
		{"control addr", func(c *Config) { c.ControlAddr = "a:b:c" }, []string{"controlAddr"}},
		{"console addr", func(c *Config) { c.ConsoleAddr = "localhost" }, []string{"consoleAddr"}},
		{"listen port 0 ok", func(c *Config) { c.DeviceAddr, c.ServiceAddr = "127.0.0.1:0", ":0" }, nil},
		{"ipv6 listen ok", func(c *Config) { c.ControlAddr = "[::1]:8445" }, nil},
		{"etcd client port 0", func(c *Config) { c.EtcdClientAddr = "127.0.0.1:0" }, []string{"etcdClientAddr"}},
		{"etcd client no port", func(c *Config) { c.EtcdClientAddr = "127.0.0.1" }, []string{"etcdClientAddr"}},
		{"etcd client port out of range", func(c *Config) { c.EtcdClientAddr = "127.0.0.1:70000" }, []string{"etcdClientAddr"}},
		{"etcd peer", func(c *Config) { c.EtcdPeerAddr = "" }, []string{"etcdPeerAddr"}},
		{"etcd peer named port", func(c *Config) { c.EtcdPeerAddr = "127.0.0.1:http" }, []string{"etcdPeerAddr"}},
		{"external etcd needs no member addrs", func(c *Config) {
			c.EtcdEndpoints, c.EtcdClientAddr, c.EtcdPeerAddr = []string{"http://127.0.0.1:2379"}, "", ""
		}, nil},
		{"cert without key", func(c *Config) { c.TLSCertFile = "cert.pem" }, []string{"tlsCertFile", "tlsKeyFile"}},
		{"key without cert", func(c *Config) { c.TLSKeyFile = "key.pem" }, []string{"tlsCertFile", "tlsKeyFile"}},
		{"cert and key", func(c *Config) { c.TLSCertFile, c.TLSKeyFile = "cert.pem", "key.pem" }, nil},
		{"no service domain", func(c *Config) { c.ServiceDomain = "" }, []string{"serviceDomain"}},
		{"service domain with port", func(c *Config) { c.ServiceDomain = "localhost:8444" }, []string{"serviceDomain"}},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, []string{"logLevel", `"verbose"`}},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, []string{"logFormat", `"xml"`}},
		{"empty log level ok", func(c *Config) { c.LogLevel = "" }, nil},
		{"negative store timeout", func(c *Config) { c.StoreTimeout = -time.Second }, []string{"storeTimeout"}},
		{"several errors", func(c *Config) { c.Name, c.Region, c.LogLevel = "", "", "loud" }, []string{"name", "region", "logLevel"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), "node: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %q, want it to name %q", err, s)
				}
			}
		})
	}
}

// TestConfigValidateDeterministic checks that several errors come out in
// the same order every time (operators diff logs; tests compare strings).
func TestConfigValidateDeterministic(t *testing.T) {
	c := DefaultConfig()
	c.DeviceAddr, c.ServiceAddr, c.ControlAddr, c.ConsoleAddr = "a", "b", "c", "d"
	c.EtcdClientAddr, c.EtcdPeerAddr = "e", "f"
	first := c.Validate().Error()
	for range 20 {
		if got := c.Validate().Error(); got != first {
			t.Fatalf("Validate() = %q, then %q", first, got)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFile(t *testing.T) {
	p := writeFile(t, "node.json", `{
		"name": "n7",
		"region": "northeurope",
		"dataDir": "/var/lib/opendps",
		"deviceAddr": "0.0.0.0:443",
		"etcdEndpoints": ["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
		"hostNames": ["dps.example.com"],
		"hostedRegions": ["*"],
		"storeTimeout": 2000000000,
		"logLevel": "debug"
	}`)
	c := DefaultConfig()
	if err := c.LoadConfigFile(p); err != nil {
		t.Fatalf("LoadConfigFile: %v", err)
	}
	def := DefaultConfig()
	tests := []struct {
		field string
		got   any
		want  any
	}{
		{"Name", c.Name, "n7"},
		{"Region", c.Region, "northeurope"},
		{"DataDir", c.DataDir, "/var/lib/opendps"},
		{"DeviceAddr", c.DeviceAddr, "0.0.0.0:443"},
		{"StoreTimeout", c.StoreTimeout, 2 * time.Second},
		{"LogLevel", c.LogLevel, "debug"},
		// Fields the file does not set keep their values.
		{"ServiceAddr", c.ServiceAddr, def.ServiceAddr},
		{"Zone", c.Zone, def.Zone},
		{"ServiceDomain", c.ServiceDomain, def.ServiceDomain},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.field, tt.got, tt.want)
		}
	}
	if want := []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}; !slices.Equal(c.EtcdEndpoints, want) {
		t.Errorf("EtcdEndpoints = %q, want %q", c.EtcdEndpoints, want)
	}
	if want := []string{"dps.example.com"}; !slices.Equal(c.HostNames, want) {
		t.Errorf("HostNames = %q, want %q", c.HostNames, want)
	}
	if want := []string{"*"}; !slices.Equal(c.HostedRegions, want) {
		t.Errorf("HostedRegions = %q, want %q", c.HostedRegions, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("loaded config is invalid: %v", err)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" = the file does not exist
		want    string
	}{
		{"missing file", "", "no such file"},
		{"unknown field", `{"name":"n1","devicePort":8443}`, "devicePort"},
		{"misspelled field", `{"dataDirectory":"x"}`, "dataDirectory"},
		{"wrong type", `{"name":5}`, "name"},
		{"malformed", `{"name":`, "config"},
		{"trailing data", `{"name":"a"} {"name":"b"}`, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "missing.json")
			if tt.content != "" {
				p = writeFile(t, "node.json", tt.content)
			}
			c := DefaultConfig()
			err := c.LoadConfigFile(p)
			if err == nil {
				t.Fatalf("LoadConfigFile(%s) = nil, want an error", tt.content)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadConfigFile = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestLogFormatJSON: --log-format json writes one JSON object per line.
func TestLogFormatJSON(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	log := newLogger("info", "json")
	os.Stderr = old
	log.Info("hello", "request_id", "abc")
	w.Close()
	var m map[string]any
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		t.Fatalf("log line is not JSON: %v", err)
	}
	if m["msg"] != "hello" || m["request_id"] != "abc" {
		t.Errorf("log line = %v", m)
	}
}
