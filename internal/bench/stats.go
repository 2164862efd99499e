package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"syscall"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
)

// Histogram records durations in log-linear buckets: exact below 256 ns,
// then 128 buckets per power of two, so a percentile is within 0.8 % of
// the true value; memory is fixed (about 60 KB). Values below zero count
// as zero. A Histogram is not safe for concurrent use: keep one per
// goroutine and Merge them.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64 // ns
	min    int64
	max    int64
}

const (
	subBits     = 7
	subCount    = 1 << subBits
	histBuckets = (64 - subBits) * subCount
)

func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1)
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketHigh is the largest value of bucket i.
func bucketHigh(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return (m+1)<<shift - 1
}

// Record adds one duration.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.n++
	h.sum += float64(v)
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of records.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest duration recorded (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean duration; 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Percentile returns the duration under which a fraction q (0..1) of the
// records fall (nearest rank, bucket upper bound, clamped to the exact
// min and max); 0 when empty.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			v := min(max(int64(bucketHigh(i)), h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Latency summarises a Histogram in milliseconds for reports.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Summary returns h's latency summary.
func (h *Histogram) Summary() Latency {
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return Latency{Count: h.n, Mean: ms(h.Mean()), P50: ms(h.Percentile(0.50)),
		P90: ms(h.Percentile(0.90)), P99: ms(h.Percentile(0.99)), Max: ms(h.Max())}
}

// Error kinds that are not an HTTP status or a registration status.
const (
	KindTimeout        = "timeout"
	KindCanceled       = "canceled"
	KindTLS            = "transport_tls"
	KindRefused        = "transport_refused"
	KindReset          = "transport_reset"
	KindNetTimeout     = "transport_timeout"
	KindTransportOther = "transport_other"
	KindOther          = "other"
)

// Classify names the kind of a registration error for the report:
// "http_<status>_<errorCode>" for an error answer, "status_<status>[_<errorCode>]"
// for a registration that ended failed or disabled, or one of the Kind
// constants for transport errors. nil gives "".
func Classify(err error) string {
	var de *dpsclient.DeviceError
	var re *dpsclient.RegistrationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de):
		return fmt.Sprintf("http_%d_%d", de.StatusCode, de.ErrorCode)
	case errors.As(err, &re):
		if re.ErrorCode != 0 {
			return fmt.Sprintf("status_%s_%d", re.Status, re.ErrorCode)
		}
		return "status_" + re.Status
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, context.Canceled):
		return KindCanceled
	}
	return classifyTransport(err)
}

func classifyTransport(err error) string {
	var ne net.Error
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	switch {
	case errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &cv), errors.As(err, &rh), errors.As(err, &ae):
		return KindTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return KindReset
	case errors.As(err, &ne) && ne.Timeout():
		return KindNetTimeout
	case errors.As(err, &ne):
		return KindTransportOther
	}
	return KindOther
}

// Errors counts errors by kind and keeps one message per kind.
type Errors struct {
	Counts  map[string]int64
	Samples map[string]string
}

// Add counts err (nil is ignored).
func (e *Errors) Add(err error) {
	k := Classify(err)
	if k == "" {
		return
	}
	if e.Counts == nil {
		e.Counts, e.Samples = map[string]int64{}, map[string]string{}
	}
	e.Counts[k]++
	if _, ok := e.Samples[k]; !ok {
		e.Samples[k] = err.Error()
	}
}

// Merge adds o's counts to e.
func (e *Errors) Merge(o *Errors) {
	for k, n := range o.Counts {
		if e.Counts == nil {
			e.Counts, e.Samples = map[string]int64{}, map[string]string{}
		}
		e.Counts[k] += n
		if _, ok := e.Samples[k]; !ok {
			e.Samples[k] = o.Samples[k]
		}
	}
}

// Total returns the number of errors.
func (e *Errors) Total() int64 {
	var n int64
	for _, c := range e.Counts {
		n += c
	}
	return n
}
