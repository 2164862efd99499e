package hubsim

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/hub"
)

// Errors of this package.
var (
	// ErrConfig is returned by Config.Validate and New for a bad config.
	ErrConfig = errors.New("hubsim: invalid config")
	// ErrUnknownHub is returned for a host name that is not a simulated hub.
	ErrUnknownHub = errors.New("hubsim: unknown hub")
	// ErrState is returned for a state file that cannot be read or written.
	ErrState = errors.New("hubsim: state file")
)

// Config configures a Sim. The zero value is a simulator with no hubs and
// no persistence.
type Config struct {
	// Hubs are the simulated hubs. Hubs restored from StateFile that are not
	// listed here are served too, with their stored keys.
	Hubs []HubConfig `json:"hubs,omitempty"`
	// StateFile, when set, is a JSON file holding the hubs, identities and
	// twins; it is read by New and rewritten (atomically) after every change.
	StateFile string `json:"stateFile,omitempty"`
	// Logger receives request logs at debug level; nil discards.
	Logger *slog.Logger `json:"-"`
	// Now is the clock (token expiry, timestamps); nil means time.Now.
	Now func() time.Time `json:"-"`
}

// HubConfig is one simulated hub.
type HubConfig struct {
	// HostName is the hub's DNS name without port, e.g. "hub1.localhost";
	// requests are routed by the Host header, case-insensitively.
	HostName string `json:"hostName"`
	// KeyName is the policy a SAS token must name (skn); "" means
	// "iothubowner".
	KeyName string `json:"keyName,omitempty"`
	// Key is the policy's base64 key.
	Key string `json:"key"`
}

// NewHubConfig returns a hub named hostName with the iothubowner policy and
// a random 32-byte key.
func NewHubConfig(hostName string) HubConfig {
	return HubConfig{HostName: hostName, KeyName: hub.OwnerPolicy, Key: randomKey()}
}

// ConnectionString is the hub owner connection string. A client dialling a
// port other than 443 needs the port in HostName; see ConnectionStringPort.
func (h HubConfig) ConnectionString() string {
	return h.connectionString(h.HostName)
}

// ConnectionStringPort is ConnectionString with ":port" after the host
// name, for a simulator listening on port.
func (h HubConfig) ConnectionStringPort(port int) string {
	return h.connectionString(fmt.Sprintf("%s:%d", h.HostName, port))
}

func (h HubConfig) connectionString(host string) string {
	return "HostName=" + host + ";SharedAccessKeyName=" + h.keyName() + ";SharedAccessKey=" + h.Key
}

func (h HubConfig) keyName() string {
	if h.KeyName == "" {
		return hub.OwnerPolicy
	}
	return h.KeyName
}

// Validate checks a hub: a host name without port or path, and a base64 key.
func (h HubConfig) Validate() error {
	if h.HostName == "" || strings.ContainsAny(h.HostName, ":/ ") {
		return fmt.Errorf("%w: hub host name %q must be a DNS name without port", ErrConfig, h.HostName)
	}
	if k, err := base64.StdEncoding.DecodeString(h.Key); err != nil || len(k) == 0 {
		return fmt.Errorf("%w: hub %s: key is not base64", ErrConfig, h.HostName)
	}
	return nil
}

// Validate checks every hub and that host names are unique.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, h := range c.Hubs {
		if err := h.Validate(); err != nil {
			return err
		}
		n := normHost(h.HostName)
		if seen[n] {
			return fmt.Errorf("%w: hub %s listed twice", ErrConfig, h.HostName)
		}
		seen[n] = true
	}
	return nil
}

// normHost lower-cases a host name and drops a port and a trailing dot.
func normHost(h string) string {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(h, ".")
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
