package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// TestMetricsCountRegistrations performs a known number of registrations
// over HTTPS and MQTT with pkg/dpsclient (assigned, disabled and refused;
// symmetric key and X.509) and of service calls, then scrapes /metrics on
// the control listener and checks the exact counter deltas, that the
// latency histograms counted each request, and that no label carries a
// registration id or the ID scope.
func TestMetricsCountRegistrations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := startDeployment(t, t.TempDir())
	defer e.d.Close()

	const key = "bWV0cmljcy1kZXZpY2Uta2V5LW1ldHJpY3MtZGV2aWNlLWtleQ=="
	symmetric := func(id, status string) {
		t.Helper()
		enr := &dpsclient.IndividualEnrollment{RegistrationID: id}
		enr.ProvisioningStatus = status
		enr.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey,
			SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: key, SecondaryKey: key}}
		if _, err := e.svc.CreateOrUpdateEnrollment(ctx, enr); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.NewCA("metrics device issuer")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"metrics-x509"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	before := e.scrape(t)
	symmetric("metrics-https", "")
	symmetric("metrics-mqtt", "")
	symmetric("metrics-disabled", model.StatusDisabled)
	x := &dpsclient.IndividualEnrollment{RegistrationID: "metrics-x509"}
	x.Attestation = &model.AttestationMechanism{Type: model.AttestationX509, X509: &model.X509Attestation{
		ClientCertificates: &model.X509Certificates{Primary: &model.X509CertificateWithInfo{
			Certificate: string(pki.EncodePEM("CERTIFICATE", cert.Leaf.Raw))}}}}
	if _, err := e.svc.CreateOrUpdateEnrollment(ctx, x); err != nil {
		t.Fatal(err)
	}
	const puts = 4

	register := func(proto, id, k string, c *dpsclient.DeviceOptions) (*dpsclient.RegistrationResult, error) {
		opts := dpsclient.DeviceOptions{Protocol: proto, Endpoint: e.conn.DeviceEndpoint, CAFile: e.conn.CACertificate,
			IDScope: e.conn.IDScope, RegistrationID: id, SymmetricKey: k, PollInterval: 50 * time.Millisecond}
		if proto == dpsclient.ProtocolMQTT {
			opts.Endpoint = e.conn.MQTTEndpoint
		}
		if c != nil {
			opts.Certificate, opts.SymmetricKey = c.Certificate, ""
		}
		return dpsclient.Register(ctx, opts)
	}
	wrongKey := "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmc="
	for _, r := range []struct {
		proto, id, key string
		cert           bool
		want           string // status, or "error"
	}{
		{dpsclient.ProtocolHTTPS, "metrics-https", key, false, model.OpStatusAssigned},
		{dpsclient.ProtocolMQTT, "metrics-mqtt", key, false, model.OpStatusAssigned},
		{dpsclient.ProtocolHTTPS, "metrics-x509", "", true, model.OpStatusAssigned},
		{dpsclient.ProtocolHTTPS, "metrics-disabled", key, false, model.OpStatusDisabled},
		{dpsclient.ProtocolHTTPS, "metrics-https", wrongKey, false, "error"},
		{dpsclient.ProtocolMQTT, "metrics-mqtt", wrongKey, false, "error"},
	} {
		var c *dpsclient.DeviceOptions
		if r.cert {
			c = &dpsclient.DeviceOptions{Certificate: &cert}
		}
		res, err := register(r.proto, r.id, r.key, c)
		switch {
		case r.want == "error":
			if err == nil || (res != nil && res.Status != "") {
				t.Fatalf("%s %s with a wrong key: %+v %v, want refused", r.proto, r.id, res, err)
			}
		case r.want == model.OpStatusDisabled:
			if !errors.Is(err, dpsclient.ErrRegistrationDisabled) {
				t.Fatalf("%s %s: %v, want disabled", r.proto, r.id, err)
			}
		case err != nil || res.Status != r.want:
			t.Fatalf("%s %s: %+v %v, want %s", r.proto, r.id, res, err, r.want)
		}
	}

	const gets = 3
	for range gets {
		if _, err := e.svc.GetEnrollment(ctx, "metrics-https"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.GetEnrollment(ctx, "metrics-none"); err == nil {
		t.Fatal("GetEnrollment of a missing enrollment succeeded")
	}

	after := e.scrape(t)
	delta := func(name string, labels ...string) float64 {
		return after.sum(name, labels...) - before.sum(name, labels...)
	}
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"result", "assigned", "protocol", "https", "attestation", "symmetricKey"}, 1},
		{[]string{"result", "assigned", "protocol", "mqtt", "attestation", "symmetricKey"}, 1},
		{[]string{"result", "assigned", "protocol", "https", "attestation", "x509"}, 1},
		{[]string{"result", "disabled", "protocol", "https", "attestation", "symmetricKey"}, 1},
		{[]string{"result", "unauthorized", "protocol", "https", "attestation", "symmetricKey"}, 1},
		{[]string{"result", "unauthorized", "protocol", "mqtt", "attestation", "symmetricKey"}, 1},
		{nil, 6},
	} {
		if got := delta("opendps_registrations_total", c.labels...); got != c.want {
			t.Errorf("opendps_registrations_total%v += %v, want %v", c.labels, got, c.want)
		}
	}
	// Every HTTPS register call (4) went through the engine and through
	// the HTTPS front end; of MQTT, the one that connected.
	regs := delta("opendps_device_requests_total", "protocol", "https", "operation", "register")
	if regs != 4 || delta("opendps_device_request_duration_seconds_count", "protocol", "https", "operation", "register") != regs {
		t.Errorf("https register requests += %v (histogram %v), want 4 in both", regs,
			delta("opendps_device_request_duration_seconds_count", "protocol", "https", "operation", "register"))
	}
	if got := delta("opendps_device_requests_total", "protocol", "https", "operation", "register", "code", "401"); got != 1 {
		t.Errorf("https register 401 += %v, want 1", got)
	}
	if got := delta("opendps_device_request_duration_seconds_count", "protocol", "mqtt", "operation", "register"); got != 1 {
		t.Errorf("mqtt register latency count += %v, want 1", got)
	}
	if got := delta("opendps_device_requests_total", "protocol", "mqtt", "operation", "authenticate", "code", "401"); got != 1 {
		t.Errorf("mqtt authenticate 401 += %v, want 1", got)
	}
	if got := delta("opendps_deviceapi_https_requests_total", "route", "register"); got != 4 {
		t.Errorf("opendps_deviceapi_https_requests_total{route=register} += %v, want 4", got)
	}

	svc := func(name string, labels ...string) float64 {
		return delta(name, append([]string{"listener", "service"}, labels...)...)
	}
	if got := svc("opendps_http_requests_total", "method", "PUT", "code", "200"); got != puts {
		t.Errorf("service PUT 200 += %v, want %d", got, puts)
	}
	if got := svc("opendps_http_requests_total", "method", "GET", "code", "200"); got != gets {
		t.Errorf("service GET 200 += %v, want %d", got, gets)
	}
	if got := svc("opendps_http_requests_total", "method", "GET", "code", "404"); got != 1 {
		t.Errorf("service GET 404 += %v, want 1", got)
	}
	if got := svc("opendps_http_request_duration_seconds_count", "method", "GET"); got != gets+1 {
		t.Errorf("service GET latency count += %v, want %d", got, gets+1)
	}
	if got := svc("opendps_http_request_duration_seconds_bucket", "method", "GET", "le", "+Inf"); got != gets+1 {
		t.Errorf("service GET latency +Inf bucket += %v, want %d", got, gets+1)
	}

	// Store health and the zone rule of this one-zone deployment.
	if v := after.sum("opendps_store_ready", "node", e.conn.Nodes[0].Name); v != 1 {
		t.Errorf("opendps_store_ready = %v, want 1", v)
	}
	if !after.has("opendps_region_zone_redundant") || !after.has("etcd_server_leader_changes_seen_total") || !after.has("etcd_server_has_leader") {
		t.Errorf("zone redundancy or etcd leader metrics missing")
	}
	// Nothing identifies a device or an instance's scope.
	for _, s := range after.lines {
		if strings.Contains(s, "metrics-") || strings.Contains(s, e.conn.IDScope) {
			t.Errorf("a metric names a device or the ID scope: %s", s)
		}
	}
}

// samples are the series of a /metrics scrape, by line.
type samples struct {
	lines []string
	vals  map[string]float64 // series (name{labels}) -> value
}

// scrape reads GET /metrics of the control listener.
func (e *deployment) scrape(t *testing.T) samples {
	t.Helper()
	resp, err := e.hc.Get(e.conn.ControlEndpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	s := samples{vals: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.lines = append(s.lines, line)
		s.vals[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// sum adds the series of name whose labels include the given name, value
// pairs.
func (s samples) sum(name string, labels ...string) float64 {
	total := 0.0
	for series, v := range s.vals {
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && strings.Contains(series, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
		}
		if ok {
			total += v
		}
	}
	return total
}

func (s samples) has(name string) bool {
	for series := range s.vals {
		if series == name || strings.HasPrefix(series, name+"{") {
			return true
		}
	}
	return false
}
