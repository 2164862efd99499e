package obs

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/apierr"
)

// HTTP wraps the handler of a listener (service, control): each request
// gets an id (apierr.Track: the x-ms-request-id header and the trackingId
// of an error body), its latency and status are recorded under listener,
// and it is logged at debug level with that id. The log line names the
// method, status and duration but not the path, which carries instance
// names and registration ids (docs/dr.md).
func HTTP(listener string, log *slog.Logger, h http.Handler) http.Handler {
	m := metrics()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		d := time.Since(start)
		code := sw.code()
		meth := method(r.Method)
		m.httpRequests.WithLabelValues(listener, meth, strconv.Itoa(code)).Inc()
		m.httpLatency.WithLabelValues(listener, meth).Observe(d.Seconds())
		if code == http.StatusTooManyRequests {
			m.throttled.WithLabelValues(listener, "https", "").Inc()
		}
		log.Debug("request", "listener", listener, "method", r.Method, "status", code,
			apierr.LogKeyRequestID, apierr.RequestID(r.Context()), "duration", d)
	})
	return apierr.Track(inner)
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
