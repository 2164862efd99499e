package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/pki"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// syncBuffer is a bytes.Buffer safe for the node's concurrent loggers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log records written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRequestIDInLogs: the trackingId of an error body of the service and
// control APIs is the x-ms-request-id header of the answer and the
// request_id of that request's log lines; a successful answer carries an
// x-ms-request-id too.
func TestRequestIDInLogs(t *testing.T) {
	logs := &syncBuffer{}
	cfg := testConfig(t, t.TempDir())
	cfg.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc, err := dpsclient.HTTPClient(filepath.Join(cfg.DataDir, "tls", pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ctl := dpsclient.NewControl("https://"+n.Addr(ListenerControl), n.OperatorToken(), hc)
	if _, err := ctl.CreateInstance(ctx, "logs-inst", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	keys, err := ctl.GetKeys(ctx, "logs-inst", model.OwnerPolicy)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(n.Addr(ListenerService))
	svcHost := "logs-inst.localhost:" + port

	get := func(url string, auth string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", auth)
		if strings.Contains(url, "localhost:"+port) { // the service API answers by host name
			req.Host = svcHost
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		return resp, body
	}
	sas := serviceSAS(t, svcHost, keys.PrimaryKey)
	for _, c := range []struct {
		name, url, auth string
		status          int
	}{
		{"service", "https://localhost:" + port + "/enrollments/no-such-device?api-version=2021-10-01", sas, 404},
		{"control", "https://" + n.Addr(ListenerControl) + "/subscriptions/" + dpsclient.DefaultSubscription +
			"/resourceGroups/default/providers/Microsoft.Devices/provisioningServices/no-such-inst?api-version=2022-02-05", "Bearer " + n.OperatorToken(), 404},
	} {
		resp, body := get(c.url, c.auth)
		tid, _ := body["trackingId"].(string)
		if resp.StatusCode != c.status || tid == "" {
			t.Fatalf("%s: %d %v, want %d with a trackingId", c.name, resp.StatusCode, body, c.status)
		}
		if h := resp.Header.Get("x-ms-request-id"); h != tid {
			t.Errorf("%s: x-ms-request-id %q, trackingId %q: want equal", c.name, h, tid)
		}
		var refused, access bool
		for _, l := range logs.lines(t) {
			if l["request_id"] != tid {
				continue
			}
			msg, _ := l["msg"].(string)
			refused = refused || strings.Contains(msg, "refused")
			access = access || (msg == "request" && l["status"] == float64(c.status) && l["listener"] == c.name)
		}
		if !refused || !access {
			t.Errorf("%s: log lines with request_id %s: refusal %v, request line %v; want both\n%s", c.name, tid, refused, access, logs.b.String())
		}
	}
	resp, _ := get("https://"+n.Addr(ListenerControl)+"/opendps/health", "Bearer "+n.OperatorToken())
	if resp.StatusCode != 200 || len(resp.Header.Get("x-ms-request-id")) != 36 {
		t.Errorf("successful control answer: %d, x-ms-request-id %q", resp.StatusCode, resp.Header.Get("x-ms-request-id"))
	}
}

// serviceSAS is a service API SAS token of the owner policy for host.
func serviceSAS(t *testing.T, host, key string) string {
	t.Helper()
	tok, err := sas.Build(host, key, model.OwnerPolicy, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestReplicationLagMetric starts two linked single-node regions: the
// westeurope node exports opendps_replication_lag_seconds for an instance
// it replicates to northeurope, and the gauge returns to 0 once the
// secondary caught up, also after a write. It also exports its store
// readiness.
func TestReplicationLagMetric(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	peerA, peerB := freeAddr(t), freeAddr(t)
	mk := func(region, sub, peerAddr, other, otherAddr string) Config {
		c := testConfig(t, filepath.Join(dir, sub))
		c.Name = "lag-" + sub
		c.Region, c.CADir, c.PeerAddr = region, caDir, peerAddr
		c.Peers = map[string]string{other: "https://" + otherAddr}
		return c
	}
	a := startNode(t, mk("westeurope", "a", peerA, "northeurope", peerB))
	startNode(t, mk("northeurope", "b", peerB, "westeurope", peerA))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hc, err := dpsclient.HTTPClient(filepath.Join(caDir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ctl := dpsclient.NewControl("https://"+a.Addr(ListenerControl), a.OperatorToken(), hc)
	if _, err := ctl.CreateInstance(ctx, "lag-inst", dpsclient.InstanceSpec{Location: "westeurope"}); err != nil {
		t.Fatal(err)
	}
	lag := func() (float64, bool) {
		m := scrapeNode(t, hc, a)
		v, ok := m[`opendps_replication_lag_seconds{destination="northeurope",instance="lag-inst"}`]
		return v, ok
	}
	waitFor(t, "the lag gauge of lag-inst at 0 (caught up)", func() bool {
		v, ok := lag()
		return ok && v == 0
	})
	if v := scrapeNode(t, hc, a)[`opendps_store_ready{node="lag-a",region="westeurope",zone="1"}`]; v != 1 {
		t.Errorf("opendps_store_ready of lag-a = %v, want 1", v)
	}
	// A write: the gauge may rise while it is in flight, and returns to 0.
	if _, err := ctl.SetPolicy(ctx, "lag-inst", "reader", "EnrollmentRead", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lag gauge back at 0 after a write", func() bool {
		v, ok := lag()
		return ok && v == 0
	})
}

// scrapeNode reads GET /metrics of n's control listener: series -> value.
func scrapeNode(t *testing.T, hc *http.Client, n *Node) map[string]float64 {
	t.Helper()
	resp, err := hc.Get("https://" + n.Addr(ListenerControl) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
