package forward

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/peer"
	"github.com/opendps/opendps/internal/store"
)

// pathService prefixes proxied service-API requests on the peer link; the
// original path follows.
const pathService = peer.PathPrefix + "service"

// Service wraps the node's service API handler: requests for an instance
// that is not primary in this region are reverse-proxied to its primary
// (Host and Authorization kept, so the SAS audience still matches). The
// instance is the first label of the Host, {name}.{ServiceDomain}, as
// serviceapi reads it. It is safe for concurrent use.
type Service struct {
	local  http.Handler
	peer   *peer.Client
	log    *slog.Logger
	suffix string // "." + lower-case service domain
	dirs   *localDirs
	loc    *locator
}

// NewService wraps local, the service API handler of this region, for
// instances served at {name}.{serviceDomain}.
func NewService(local http.Handler, serviceDomain string, cfg Config) (*Service, error) {
	if local == nil {
		return nil, errors.New("forward: the local service handler is required")
	}
	d := strings.Trim(strings.ToLower(serviceDomain), ".")
	if d == "" || strings.ContainsAny(d, ":/") {
		return nil, fmt.Errorf("forward: service domain %q must be a domain name without port", serviceDomain)
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Service{local: local, peer: cfg.Peer, log: cfg.Log, suffix: "." + d,
		dirs: newLocalDirs(cfg.Store, cfg.LocalTTL),
		loc:  newLocator(cfg.Peer, cfg.Log, cfg.LocateTTL, cfg.NegativeTTL)}, nil
}

// instanceName extracts the instance from a Host value like serviceapi.
func (s *Service) instanceName(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	name, ok := strings.CutSuffix(host, s.suffix)
	if !ok || name == "" || strings.Contains(name, ".") || len(name) > 63 {
		return "", false
	}
	return name, true
}

// ServeHTTP implements http.Handler.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	region, err := s.route(r)
	switch {
	case err != nil:
		apierr.Write(w, r, nil, err)
	case region == "":
		s.local.ServeHTTP(w, r)
	default:
		s.proxy(w, r, region)
	}
}

// route returns the region that serves r, "" for this one.
func (s *Service) route(r *http.Request) (string, error) {
	name, ok := s.instanceName(r.Host)
	if !ok {
		return "", nil // the local handler answers its 404
	}
	dir, err := s.dirs.byName(r.Context(), name)
	if err != nil {
		return "", unavailable("Storage is busy or unavailable; try again.", nil)
	}
	if dir != nil {
		if dir.Role != model.RoleSecondary {
			return "", nil // primary or fenced: the local handler (fenced refuses writes)
		}
		if dir.Primary == "" || dir.Primary == s.peer.Region() || !s.peer.Knows(dir.Primary) {
			return "", unavailable("The region serving this provisioning service cannot be reached; try again.", nil)
		}
		return dir.Primary, nil
	}
	loc, err := s.loc.instance(r.Context(), name)
	switch {
	case err != nil:
		return "", unavailable("The region serving this provisioning service cannot be reached; try again.", nil)
	case loc == nil:
		return "", nil
	}
	return loc.Region, nil
}

// proxy sends r to region's /opendps/peer/service{path}, trying each of
// the region's peer URLs until one answers. The body is buffered (service
// API bodies are small) so that it can be sent again.
func (s *Service) proxy(w http.ResponseWriter, r *http.Request, region string) {
	hc, urls, err := s.peer.HTTPClient(region)
	if err != nil {
		apierr.Write(w, r, nil, unavailable("The region serving this provisioning service cannot be reached; try again.", nil))
		return
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, apierr.MaxBody+1))
		if err != nil {
			apierr.Write(w, r, nil, apierr.New(apierr.CodeBadRequest, "Could not read the request body."))
			return
		}
		if len(body) > apierr.MaxBody {
			apierr.Write(w, r, nil, apierr.New(apierr.CodePayloadTooLarge, "Request body is larger than %d bytes.", apierr.MaxBody))
			return
		}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Path = pathService + pr.In.URL.Path
			if pr.In.URL.RawPath != "" {
				pr.Out.URL.RawPath = pathService + pr.In.URL.RawPath
			}
			pr.Out.Host = pr.In.Host
		},
		Transport: &eachURL{rt: hc.Transport, urls: urls, body: body},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				s.log.Warn("forward: service proxy failed", "peer", region)
			}
			apierr.Write(w, r, nil, unavailable("The region serving this provisioning service cannot be reached; try again.", nil))
		},
	}
	rp.ServeHTTP(w, r)
	s.log.Debug("service request proxied", "peer", region)
}

// eachURL sends a request to the first of urls that answers.
type eachURL struct {
	rt   http.RoundTripper
	urls []string
	body []byte
}

func (e *eachURL) RoundTrip(req *http.Request) (*http.Response, error) {
	var errs []error
	for _, base := range e.urls {
		u, err := url.Parse(base)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out := req.Clone(req.Context())
		out.URL.Host = u.Host
		out.Body, out.ContentLength = http.NoBody, int64(len(e.body))
		if len(e.body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(e.body))
		}
		resp, err := e.rt.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		if req.Context().Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// Mount adds the receiving side, /opendps/peer/service/..., to the peer
// listener's mux: the request is served by the local service API handler
// (never proxied again) with its original path and Host.
func (s *Service) Mount(mux *http.ServeMux) {
	mux.Handle(pathService+"/", peerOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The sender routed on its cached entry; this region may have been
		// demoted since (its copy is then being reset by a base copy):
		// read the entry afresh and never answer from a secondary copy.
		if name, ok := s.instanceName(r.Host); ok {
			dir, err := s.dirs.st.Dir(r.Context(), name)
			if errors.Is(err, store.ErrNotFound) {
				dir, err = nil, nil
			}
			if err != nil {
				apierr.Write(w, r, nil, unavailable("The service is temporarily unavailable; retry.", err))
				return
			}
			if dir != nil && dir.Role == model.RoleSecondary {
				apierr.Write(w, r, nil, unavailable("This region is not the primary of this provisioning service; retry.", nil))
				return
			}
		}
		in := r.Clone(r.Context())
		in.URL.Path = strings.TrimPrefix(r.URL.Path, pathService)
		in.URL.RawPath = strings.TrimPrefix(r.URL.RawPath, pathService)
		in.RequestURI = in.URL.RequestURI()
		s.local.ServeHTTP(w, in)
	})))
}
