package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

func TestHistogramBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		v := r.Uint64() >> 1 >> r.IntN(63) // durations: below 2^63
		i := bucketOf(v)
		if i >= histBuckets || bucketHigh(i) < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Fatalf("value %d: bucket %d holds (%d, %d]", v, i, bucketHigh(i-1), bucketHigh(i))
		}
		if v >= 256 && float64(bucketHigh(i)-v) > float64(v)/128 {
			t.Fatalf("value %d: bucket bound %d is more than 1/128 off", v, bucketHigh(i))
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	for i := 1000; i >= 1; i-- { // order must not matter
		h.Record(time.Duration(i) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond},
		{0.99, 990 * time.Millisecond}, {1, 1000 * time.Millisecond}}
	for _, tt := range tests {
		got := h.Percentile(tt.q)
		if got < tt.want || float64(got-tt.want) > float64(tt.want)/100 {
			t.Errorf("Percentile(%v) = %v, want %v (+1%%)", tt.q, got, tt.want)
		}
	}
	if h.Max() != time.Second || h.Count() != 1000 {
		t.Errorf("Max = %v, Count = %d", h.Max(), h.Count())
	}
	if m := h.Mean(); m < 500*time.Millisecond || m > 501*time.Millisecond {
		t.Errorf("Mean = %v, want 500.5ms", m)
	}
	s := h.Summary()
	if s.Max != 1000 || s.Count != 1000 || s.P50 < 500 || s.P50 > 505 {
		t.Errorf("Summary = %+v", s)
	}
}

func TestHistogramSmallExactAndMerge(t *testing.T) {
	var a, b, empty Histogram
	for _, v := range []time.Duration{3, 1, 2} {
		a.Record(v)
	}
	b.Record(200)
	b.Record(-5) // counts as 0
	a.Merge(&b)
	a.Merge(&empty)
	if a.Count() != 5 || a.Percentile(0.2) != 0 || a.Percentile(0.6) != 2 || a.Max() != 200 {
		t.Errorf("merged: count %d p20 %v p60 %v max %v", a.Count(), a.Percentile(0.2), a.Percentile(0.6), a.Max())
	}
	if empty.Percentile(0.5) != 0 || empty.Mean() != 0 || empty.Summary().Count != 0 {
		t.Error("empty histogram is not all zero")
	}
}

func TestClassify(t *testing.T) {
	refused := dialClosedPort(t)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"throttled", &dpsclient.DeviceError{StatusCode: 429, ErrorCode: 429001}, "http_429_429001"},
		{"wrapped unauthorized", fmt.Errorf("x: %w", &dpsclient.DeviceError{StatusCode: 401, ErrorCode: 401000}), "http_401_401000"},
		{"failed", &dpsclient.RegistrationError{Status: "failed", ErrorCode: 400208}, "status_failed_400208"},
		{"disabled", &dpsclient.RegistrationError{Status: "disabled"}, "status_disabled"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), KindTimeout},
		{"canceled", context.Canceled, KindCanceled},
		{"refused", refused, KindRefused},
		{"eof", &url.Error{Op: "Put", URL: "https://x", Err: io.EOF}, KindReset},
		{"unknown CA", &url.Error{Op: "Put", URL: "https://x", Err: x509.UnknownAuthorityError{}}, KindTLS},
		{"other", errors.New("boom"), KindOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

func dialClosedPort(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	if err == nil {
		t.Skip("closed port accepted a connection")
	}
	return err
}

func TestErrors(t *testing.T) {
	var a, b Errors
	a.Add(nil)
	a.Add(&dpsclient.DeviceError{StatusCode: 429, ErrorCode: 429001, Message: "first"})
	a.Add(&dpsclient.DeviceError{StatusCode: 429, ErrorCode: 429001, Message: "second"})
	b.Add(context.DeadlineExceeded)
	b.Add(&dpsclient.DeviceError{StatusCode: 429, ErrorCode: 429001, Message: "third"})
	a.Merge(&b)
	if a.Total() != 4 || a.Counts["http_429_429001"] != 3 || a.Counts[KindTimeout] != 1 {
		t.Errorf("Counts = %v", a.Counts)
	}
	if s := a.Samples["http_429_429001"]; s == "" || !strings.Contains(s, "first") {
		t.Errorf("sample = %q, want the first message", s)
	}
}
