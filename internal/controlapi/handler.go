// Package controlapi is the HTTP control API of opendps: DPS instances,
// their keys, linked hubs and CA certificates, shaped after the ARM
// resource Microsoft.Devices/provisioningServices (spec/dps-protocol.md §8)
// so that the ARM SDKs work against it, plus a few opendps routes.
//
// Every request must carry "Authorization: Bearer <operator token>";
// nothing, not even /opendps/health, answers without it.
//
// Routes (P = /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Devices/provisioningServices;
// literal segments are case-insensitive; ARM routes require ?api-version=;
// errors carry the ARM {"error":{code,message}} beside the DPS fields):
//
//	GET    /subscriptions/{sub}/providers/Microsoft.Devices/provisioningServices   list by subscription
//	POST   /subscriptions/{sub}/providers/Microsoft.Devices/checkProvisioningServiceNameAvailability
//	GET    P                                         list by resource group
//	PUT    P/{name}                                  create (201 + Azure-AsyncOperation) or update (200); done on return
//	GET    P/{name}                                  read (policy keys omitted, hub keys masked)
//	PATCH  P/{name}                                  update tags
//	DELETE P/{name}                                  delete (202 + Azure-AsyncOperation, Location); done on return
//	POST   P/{name}/listkeys                         all policies with keys
//	POST   P/{name}/keys/{keyName}/listkeys          one policy with keys
//	GET    P/{name}/skus                             [{"name":"S1"}]
//	GET    P/{name}/operationresults/{id}            {"status":"Succeeded"} (operations are synchronous)
//	GET    P/{name}/certificates                     CA certificates
//	GET    P/{name}/certificates/{cert}
//	PUT    P/{name}/certificates/{cert}              upload; If-Match required to replace
//	DELETE P/{name}/certificates/{cert}              If-Match required
//	POST   P/{name}/certificates/{cert}/generateVerificationCode   If-Match required
//	POST   P/{name}/certificates/{cert}/verify                     If-Match required
//	opendps extensions:
//	POST   P/{name}/keys/{keyName}/regenerate        {"key":"primary|secondary"}
//	PUT    P/{name}/policies/{keyName}               {"rights":"EnrollmentRead, ..."}; If-None-Match: * = add only
//	DELETE P/{name}/policies/{keyName}
//	GET    P/{name}/iotHubs                          linked hubs (keys masked)
//	PUT    P/{name}/iotHubs/{hostName}               one iotHubs entry
//	DELETE P/{name}/iotHubs/{hostName}
//	GET    P/{name}/stats                            enrollment, group and registration counts
//	GET    /opendps/regions                          the region catalog
//	GET    /opendps/health
//	deployment records (deployments.go), D = /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Resources/deployments:
//	GET    D                                         list, newest first
//	PUT    D/{name}                                  create or replace
//	GET    D/{name}
//	DELETE D/{name}
package controlapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// Config configures the control API handler.
type Config struct {
	// Manager runs the operations. Required.
	Manager *instance.Manager
	// Catalog is served at /opendps/regions. Required.
	Catalog *regions.Catalog
	// Token is the operator token every request must present as
	// "Authorization: Bearer <Token>". Required (an empty token would let
	// anyone in).
	Token string
	// Log receives request diagnostics; nil discards.
	Log *slog.Logger
	// MaxBody bounds request bodies; 0 means apierr.MaxBody (96 KiB).
	MaxBody int64
	// Store keeps deployment records (deployments.go); nil answers their
	// routes with 404.
	Store *store.Store
}

// Handler serves the control API. It is safe for concurrent use.
type Handler struct {
	m       *instance.Manager
	cat     *regions.Catalog
	token   [sha256.Size]byte
	log     *slog.Logger
	maxBody int64
	router  router
	store   *store.Store // deployment records; may be nil
}

var _ http.Handler = (*Handler)(nil)

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Manager == nil:
		return nil, errors.New("controlapi: config: Manager is required")
	case cfg.Catalog == nil:
		return nil, errors.New("controlapi: config: Catalog is required")
	case cfg.Token == "":
		return nil, errors.New("controlapi: config: Token is required")
	}
	h := &Handler{m: cfg.Manager, cat: cfg.Catalog, token: sha256.Sum256([]byte(cfg.Token)),
		log: cfg.Log, maxBody: cfg.MaxBody, store: cfg.Store}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = apierr.MaxBody
	}
	h.routes()
	return h, nil
}

// Path prefixes of the ARM routes.
const (
	subPrefix = "/subscriptions/{sub}/providers/Microsoft.Devices"
	rgPrefix  = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Devices/provisioningServices"
	instPath  = rgPrefix + "/{name}"
)

func (h *Handler) routes() {
	rt := &h.router
	rt.add(http.MethodGet, subPrefix+"/provisioningServices", true, h.listBySubscription)
	rt.add(http.MethodPost, subPrefix+"/checkProvisioningServiceNameAvailability", true, h.checkName)
	rt.add(http.MethodGet, rgPrefix, true, h.listByResourceGroup)
	rt.add(http.MethodPut, instPath, true, h.putInstance)
	rt.add(http.MethodGet, instPath, true, h.getInstance)
	rt.add(http.MethodPatch, instPath, true, h.patchInstance)
	rt.add(http.MethodDelete, instPath, true, h.deleteInstance)
	rt.add(http.MethodPost, instPath+"/listkeys", true, h.listKeys)
	rt.add(http.MethodPost, instPath+"/keys/{keyName}/listkeys", true, h.listKeysForName)
	rt.add(http.MethodPost, instPath+"/keys/{keyName}/regenerate", true, h.regenerateKey)
	rt.add(http.MethodPut, instPath+"/policies/{keyName}", true, h.putPolicy)
	rt.add(http.MethodDelete, instPath+"/policies/{keyName}", true, h.deletePolicy)
	rt.add(http.MethodGet, instPath+"/iotHubs", true, h.listHubs)
	rt.add(http.MethodPut, instPath+"/iotHubs/{hostName}", true, h.putHub)
	rt.add(http.MethodDelete, instPath+"/iotHubs/{hostName}", true, h.deleteHub)
	rt.add(http.MethodGet, instPath+"/skus", true, h.listSKUs)
	rt.add(http.MethodGet, instPath+"/stats", true, h.stats)
	rt.add(http.MethodGet, instPath+"/operationresults/{operationId}", true, h.operationResult)
	rt.add(http.MethodGet, instPath+"/certificates", true, h.listCertificates)
	rt.add(http.MethodGet, instPath+"/certificates/{cert}", true, h.getCertificate)
	rt.add(http.MethodPut, instPath+"/certificates/{cert}", true, h.putCertificate)
	rt.add(http.MethodDelete, instPath+"/certificates/{cert}", true, h.deleteCertificate)
	rt.add(http.MethodPost, instPath+"/certificates/{cert}/generateVerificationCode", true, h.generateVerificationCode)
	rt.add(http.MethodPost, instPath+"/certificates/{cert}/verify", true, h.verifyCertificate)
	rt.add(http.MethodGet, "/opendps/regions", false, h.regions)
	rt.add(http.MethodGet, "/opendps/health", false, h.health)
	h.deploymentRoutes()
}

// ServeHTTP authenticates, routes and serves a request. A panic becomes a
// 500 in the error shape, never a dropped connection.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("control handler panic", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			h.writeError(w, r, apierr.New(apierr.CodeInternal, "Internal error."))
		}
	}()
	if err := h.serve(w, r); err != nil {
		h.writeError(w, r, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	if !h.authorized(r) {
		e := apierr.New(apierr.CodeUnauthorized, "A valid operator token is required: Authorization: Bearer <token>.")
		e.Header = http.Header{"WWW-Authenticate": {`Bearer realm="opendps-control"`}}
		return e
	}
	rt, p, allowed := h.router.find(r)
	if rt == nil {
		if len(allowed) > 0 {
			e := apierr.New(apierr.CodeMethodNotAllowed, "Method %s is not allowed here; use %s.", r.Method, strings.Join(allowed, ", "))
			e.Header = http.Header{"Allow": {strings.Join(allowed, ", ")}}
			return e
		}
		return notFound("No control API route matches %s %s.", r.Method, r.URL.Path)
	}
	if rt.arm {
		if err := checkAPIVersion(r); err != nil {
			return err
		}
	}
	return rt.fn(w, r, p)
}

// authorized compares the bearer token in constant time (over digests, so
// the length does not leak either).
func (h *Handler) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}

var apiVersionRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$`)

// checkAPIVersion requires a syntactically valid api-version; any date is
// accepted and the JSON shape does not vary by version (spec §1.3, §8.1).
func checkAPIVersion(r *http.Request) error {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return apierr.New(apierr.CodeInvalidAPIVersion, "The api-version query parameter is required (for example api-version=2022-02-05).")
	}
	if !apiVersionRE.MatchString(v) {
		return apierr.New(apierr.CodeInvalidAPIVersion, "The api-version %q is not valid; use a date such as 2022-02-05.", clip(v))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// decode reads a JSON body into v (see apierr.DecodeJSON: 413, 415, 400).
func (h *Handler) decode(r *http.Request, v any, required bool) error {
	return apierr.DecodeJSON(r, h.maxBody, v, required)
}

// regionsBody is the answer of GET /opendps/regions.
type regionsBody struct {
	Region string           `json:"region,omitempty"` // this node's region
	Value  []regions.Region `json:"value"`
}

func (h *Handler) regions(w http.ResponseWriter, _ *http.Request, _ params) error {
	return apierr.JSON(w, http.StatusOK, regionsBody{Region: h.m.Region(), Value: h.cat.All()})
}

func (h *Handler) health(w http.ResponseWriter, _ *http.Request, _ params) error {
	return apierr.JSON(w, http.StatusOK, map[string]string{"status": "ok", "region": h.m.Region()})
}
