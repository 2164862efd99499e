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
	// Region is the region of ControlEndpoint (the default instance's
	// primary). Regions lists every region of a multi-region deployment
	// (empty for one region); the CLI's --region picks one's control API.
	Region  string       `json:"region,omitempty"`
	Regions []RegionInfo `json:"regions,omitempty"`
	// Instances lists the deployment's default instances (the first is the
	// one above; a dev deployment adds a data-residency instance).
	Instances []InstanceInfo `json:"instances,omitempty"`
	// FrontDoor is the global endpoint of a multi-region deployment (the
	// top-level device and service endpoints then point at it).
	FrontDoor *FrontDoorInfo `json:"frontDoor,omitempty"`
}

// RegionInfo describes one region of a multi-region deployment.
type RegionInfo struct {
	Name string `json:"name"`
	// Pair is the catalog's paired region (the secondary of instances
	// whose primary is this region).
	Pair string `json:"pair,omitempty"`
	// ControlURLs are the control APIs of the region's nodes.
	ControlURLs []string `json:"controlURLs"`
	// PeerURLs are the peer-link listeners of the region's nodes.
	PeerURLs []string `json:"peerURLs,omitempty"`
	// DeviceEndpoints are host:port of the region's device APIs (bypassing
	// the front door).
	DeviceEndpoints []string `json:"deviceEndpoints,omitempty"`
}

// InstanceInfo describes a default instance of a dev deployment.
type InstanceInfo struct {
	Name                    string `json:"name"`
	IDScope                 string `json:"idScope"`
	Region                  string `json:"region"`
	DataResidency           bool   `json:"dataResidency"`
	ServiceEndpoint         string `json:"serviceEndpoint"`
	ServiceConnectionString string `json:"serviceConnectionString"`
}

// FrontDoorInfo describes the front door of a multi-region deployment.
type FrontDoorInfo struct {
	DeviceEndpoint  string `json:"deviceEndpoint"`  // host:port, HTTPS device API and MQTT over WebSocket
	MQTTEndpoint    string `json:"mqttEndpoint"`    // host:port, MQTT over TLS
	ServiceEndpoint string `json:"serviceEndpoint"` // host:port of the service APIs
	PID             int    `json:"pid,omitempty"`
	// Command starts it again (`opendps dev --multi-process`).
	Command []string `json:"command,omitempty"`
}

// RegionControl returns the control URLs of region, or nil.
func (c *Connection) RegionControl(region string) []string {
	for _, r := range c.Regions {
		if r.Name == region {
			return r.ControlURLs
		}
	}
	return nil
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
