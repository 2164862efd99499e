package node

import (
	"net/http"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// handlers builds the handler of each listener.
func (n *Node) handlers() (map[string]http.Handler, error) {
	notFound := apierr.Handler(n.log, func(w http.ResponseWriter, r *http.Request) error {
		return apierr.New(apierr.CodeNotFound, "No route for %s %s.", r.Method, r.URL.Path)
	})
	control := http.NewServeMux()
	n.mountOps(control)
	control.Handle("/", notFound)
	return map[string]http.Handler{
		ListenerDevice:  notFound,
		ListenerService: notFound,
		ListenerControl: control,
		ListenerConsole: notFound,
	}, nil
}

// mountOps adds health, readiness and metrics endpoints (no auth: they
// carry no tenant data).
func (n *Node) mountOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := n.store.Count(r.Context(), "/opendps/dir/"); err != nil {
			http.Error(w, "store unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.Handler())
}
