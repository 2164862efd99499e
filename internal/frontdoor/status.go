package frontdoor

import (
	"encoding/json"
	"net/http"
)

// Status is the answer of GET /status.
type Status struct {
	// Routes maps each served API to the region its new connections go
	// to ("" when none is healthy).
	Routes   map[string]string `json:"routes"`
	Backends []BackendStatus   `json:"backends"`
}

// BackendStatus is the health of one backend.
type BackendStatus struct {
	Region  string `json:"region"`
	API     string `json:"api"`
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
}

// Status returns the current routes and backend health.
func (f *FrontDoor) Status() Status {
	s := Status{Routes: map[string]string{}}
	for api := range f.lns {
		s.Routes[api] = f.route(api)
	}
	for _, b := range f.backends {
		s.Backends = append(s.Backends, BackendStatus{Region: b.region, API: b.api, Addr: b.addr, Healthy: b.healthy.Load()})
	}
	return s
}

func (f *FrontDoor) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(f.Status())
	})
	return mux
}
