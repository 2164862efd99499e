// Package dpsclient is the Go client of opendps: the connection details of
// a deployment, and clients for its control API, service API and device API.
package dpsclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/opendps/opendps/internal/netutil"
)

// Connection is what `opendps dev` writes to DIR/connection.json: how to
// reach a deployment and with which credentials.
type Connection struct {
	IDScope                 string     `json:"idScope"`
	InstanceName            string     `json:"instanceName"`
	DeviceEndpoint          string     `json:"deviceEndpoint"`  // host:port of the HTTPS device API (and MQTT over WebSocket)
	MQTTEndpoint            string     `json:"mqttEndpoint"`    // host:port of the device API over MQTT with TLS
	ServiceEndpoint         string     `json:"serviceEndpoint"` // host:port of the default instance's service API
	ServiceConnectionString string     `json:"serviceConnectionString"`
	CACertificate           string     `json:"caCertificate"`   // path of the PEM that signs every server certificate
	ControlEndpoint         string     `json:"controlEndpoint"` // https URL
	OperatorToken           string     `json:"operatorToken"`
	ConsoleURL              string     `json:"consoleURL"`
	Hubs                    []HubInfo  `json:"hubs"`
	Nodes                   []NodeInfo `json:"nodes"`
}

// HubInfo describes a simulated hub of a dev deployment.
type HubInfo struct {
	HostName         string `json:"hostName"`
	ConnectionString string `json:"connectionString"`
}

// NodeInfo describes one node of a deployment.
type NodeInfo struct {
	Name           string `json:"name"`
	Region         string `json:"region"`
	Zone           string `json:"zone"`
	PID            int    `json:"pid"`
	DeviceEndpoint string `json:"deviceEndpoint"`
	MQTTEndpoint   string `json:"mqttEndpoint"`
	ServiceAddr    string `json:"serviceAddr"`
	ControlURL     string `json:"controlURL"`
	ConsoleURL     string `json:"consoleURL"`
	EtcdClientURL  string `json:"etcdClientURL"`
	// Command starts the node again (a dev deployment's child process,
	// `opendps dev --multi-process`); empty when the node runs inside the
	// dev process.
	Command []string `json:"command,omitempty"`
}

// LoadConnection reads a connection.json file.
func LoadConnection(path string) (*Connection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Connection
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("dpsclient: %s: %w", path, err)
	}
	return &c, nil
}

// HTTPClient returns an HTTP client trusting the PEM file caFile (or the
// system roots when empty) and sending *.localhost names to loopback.
func HTTPClient(caFile string) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("dpsclient: no certificate in %s", caFile)
		}
		tc.RootCAs = pool
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: netutil.DialContext, TLSClientConfig: tc,
			MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			ForceAttemptHTTP2: true,
		},
	}, nil
}
