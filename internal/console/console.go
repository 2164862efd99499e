// Package console is the web console every node serves on its console
// listener (docs/console.md): server-rendered pages over the node's own
// control-plane code (instance.Manager, enrollment.Service, the region
// view and the failover manager), reached through the small interfaces
// below so that tests can stand in fakes.
//
// A tenant signs in with an instance name and a key of one of its shared
// access policies and sees that instance with that policy's rights; an
// operator signs in with the operator token and sees everything,
// including the region view and failover. Nothing is shown without a
// session (session.go).
//
// Example (what internal/node does):
//
//	c, err := console.New(console.Config{
//		Instances: console.FromManager(mgr, st), Enrollments: enrollments,
//		Region: reg, DR: failover, Replication: report, Catalog: catalog,
//		RegionName: "westeurope", OperatorToken: token,
//	})
//	...
//	srv := &http.Server{Handler: c}
//	defer c.Close()
package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/region"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Errors of New.
var (
	// ErrConfig: a required field of Config is missing.
	ErrConfig = errors.New("console: invalid config")
)

// Instances is what the console needs of instance.Manager (FromManager
// adapts one). Implementations are safe for concurrent use.
type Instances interface {
	// ListAll returns every instance the node knows, in every ARM scope.
	ListAll(ctx context.Context) ([]*instance.View, error)
	Get(ctx context.Context, name string) (*instance.View, error)
	Lookup(ctx context.Context, name string) (*model.Instance, error)
	Create(ctx context.Context, spec instance.Spec) (*instance.View, error)
	Stats(ctx context.Context, name string) (instance.Stats, error)
	AddHub(ctx context.Context, name string, s instance.HubSpec) (h model.LinkedHub, created bool, err error)
	RemoveHub(ctx context.Context, name, hostName string) error
	Delete(ctx context.Context, name, ifMatch string) error
	SetPolicy(ctx context.Context, name, keyName, rights string, createOnly bool) (p model.AccessPolicy, created bool, err error)
	RemovePolicy(ctx context.Context, name, keyName string) error
	RegenerateKey(ctx context.Context, name, keyName, which string) (model.AccessPolicy, error)
	Certificates(ctx context.Context, name string) ([]model.Certificate, error)
	PutCertificate(ctx context.Context, name, certName string, s instance.CertSpec) (c model.Certificate, created bool, err error)
	GenerateVerificationCode(ctx context.Context, name, certName, ifMatch string) (model.Certificate, error)
	VerifyCertificate(ctx context.Context, name, certName, ifMatch, proof string) (model.Certificate, error)
	DeleteCertificate(ctx context.Context, name, certName, ifMatch string) error
}

// Enrollments is what the console needs of enrollment.Service.
type Enrollments interface {
	ListEnrollments(ctx context.Context, instance, after string, limit int) ([]*model.IndividualEnrollment, string, error)
	GetEnrollment(ctx context.Context, instance, regID string) (*model.IndividualEnrollment, error)
	PutEnrollment(ctx context.Context, instance string, e *model.IndividualEnrollment, ifMatch string) (*model.IndividualEnrollment, error)
	CreateEnrollment(ctx context.Context, instance string, e *model.IndividualEnrollment) (*model.IndividualEnrollment, error)
	DeleteEnrollment(ctx context.Context, instance, regID, ifMatch string) error
	ListGroups(ctx context.Context, instance, after string, limit int) ([]*model.EnrollmentGroup, string, error)
	ListGroupRegistrations(ctx context.Context, instance, groupID, after string, limit int) ([]*model.Registration, string, error)
	GetGroup(ctx context.Context, instance, groupID string) (*model.EnrollmentGroup, error)
	PutGroup(ctx context.Context, instance string, g *model.EnrollmentGroup, ifMatch string) (*model.EnrollmentGroup, error)
	CreateGroup(ctx context.Context, instance string, g *model.EnrollmentGroup) (*model.EnrollmentGroup, error)
	DeleteGroup(ctx context.Context, instance, groupID, ifMatch string) error
	GetRegistration(ctx context.Context, instance, regID string) (*model.Registration, error)
	DeleteRegistration(ctx context.Context, instance, regID, ifMatch string) error
}

// Region reports the state of the node's region (region.Region).
type Region interface {
	Status(ctx context.Context) (*region.Status, error)
}

// DR runs failovers in the node's region (dr.Manager): the region that
// becomes primary runs them. It also fences the region's primary
// instances and keeps the lost-writes reports of those it lost.
type DR interface {
	Failover(ctx context.Context, req model.FailoverRequest) (*model.FailoverReport, error)
	Fence(ctx context.Context, req model.FenceRequest) (*model.FenceResult, error)
	LostWrites(ctx context.Context, instance string) ([]model.LostWrites, error)
	DeleteLostWrites(ctx context.Context, instance string, newEpoch uint64) error
}

// ReplicationFunc reports the region's replication: the streams it sends
// (model.ReplStatus, this region as source) and the copies it receives
// (model.ReplState, this region as destination); replicate.Report.
type ReplicationFunc func(ctx context.Context) (streams []model.ReplStatus, incoming []model.ReplState, err error)

// Config configures a Console.
type Config struct {
	// Instances, Enrollments, Catalog and OperatorToken are required.
	Instances   Instances
	Enrollments Enrollments
	Catalog     *regions.Catalog
	// OperatorToken signs operators in. Unless SessionKey is set, the
	// session and CSRF key is derived from it (session.go).
	OperatorToken string
	// SessionKey, when non-empty, is the HMAC key of session cookies.
	SessionKey []byte
	// RegionName is the node's region ("" in single-region tests).
	RegionName string
	// RegionConsoles maps other regions to the base URL of a console
	// there ("https://host:port"): pages about an instance whose primary
	// is such a region link to it. Regions it lacks are named only.
	RegionConsoles map[string]string
	// SignInRate and SignInBurst limit sign-in attempts per client IP
	// (0: DefaultSignInRate and DefaultSignInBurst; negative rate: no limit).
	SignInRate  float64
	SignInBurst int
	// Region, DR and Replication feed the operator's region view; nil
	// leaves out what they would show.
	Region      Region
	DR          DR
	Replication ReplicationFunc
	// SampleInterval is how often the replication lag is sampled for the
	// chart: 0 means DefaultSampleInterval, negative disables sampling.
	SampleInterval time.Duration
	// SessionTTL is the lifetime of a session: 0 means DefaultSessionTTL.
	SessionTTL time.Duration
	// Log receives failures; nil discards.
	Log *slog.Logger
}

// Defaults of Config.
const (
	DefaultSampleInterval = 3 * time.Second
	DefaultSessionTTL     = 8 * time.Hour
	// lagSamples is the length of the lag history: 5 minutes at 3 s.
	lagSamples = 100
	// requestTimeout bounds the store calls of one page (not failovers).
	requestTimeout = 15 * time.Second
	// failoverTimeout bounds a failover started from the console (a
	// planned one drains; regionapi allows as long).
	failoverTimeout = 2 * time.Minute
)

// Console is the console's http.Handler. It is safe for concurrent use;
// Close stops its lag sampler.
type Console struct {
	cfg   Config
	log   *slog.Logger
	key   []byte // HMAC key of sessions and CSRF tokens
	mux   *http.ServeMux
	pages pages
	// signIns limits sign-in attempts per client IP (nil: no limit).
	signIns *ipLimiter
	lag     *lagRing // nil without sampling
	stop    chan struct{}
	done    chan struct{}
	// Failovers started from the console run in the background (bg),
	// under bgCtx, which Close cancels.
	ops      opLog
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

// New validates cfg and returns a console; its lag sampler runs until
// Close.
func New(cfg Config) (*Console, error) {
	switch {
	case cfg.Instances == nil:
		return nil, fmt.Errorf("%w: Instances is required", ErrConfig)
	case cfg.Enrollments == nil:
		return nil, fmt.Errorf("%w: Enrollments is required", ErrConfig)
	case cfg.Catalog == nil:
		return nil, fmt.Errorf("%w: Catalog is required", ErrConfig)
	case cfg.OperatorToken == "":
		return nil, fmt.Errorf("%w: OperatorToken is required", ErrConfig)
	}
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := parsePages(cfg.Catalog)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, log: log, key: sessionKey(cfg), pages: p,
		signIns: newIPLimiter(cfg.SignInRate, cfg.SignInBurst),
		stop:    make(chan struct{}), done: make(chan struct{})}
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.routes()
	if cfg.Replication != nil && cfg.SampleInterval > 0 {
		c.lag = newLagRing(lagSamples)
		go c.sample()
	} else {
		close(c.done)
	}
	return c, nil
}

// sessionKey is cfg.SessionKey, else HMAC-SHA256(token, label): stable
// across restarts and equal on every node sharing the operator token, so
// a session outlives a node restart and works on the region's other
// nodes; changing the token ends every session.
func sessionKey(cfg Config) []byte {
	if len(cfg.SessionKey) > 0 {
		return cfg.SessionKey
	}
	m := hmac.New(sha256.New, []byte(cfg.OperatorToken))
	m.Write([]byte("opendps console session key v1"))
	return m.Sum(nil)
}

// Close stops the sampler, cancels the failovers still running (as the
// end of a control API request would) and waits for them. It is
// idempotent.
func (c *Console) Close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	c.bgCancel()
	c.bg.Wait()
}

// ServeHTTP serves the console, with headers that keep it out of frames
// and off other origins' scripts.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

// routes registers every page. Pages need a session (auth); operator-only
// pages also need the operator (op).
func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /signin", c.signInPage)
	m.HandleFunc("POST /signin", c.signIn)
	m.Handle("POST /signout", c.auth(c.signOut))
	m.Handle("GET /{$}", c.auth(c.home))
	m.Handle("GET /instances", c.auth(c.instanceList))
	m.Handle("GET /instances/new", c.op(c.newInstancePage))
	m.Handle("POST /instances", c.op(c.createInstance))
	m.Handle("GET /instances/{name}", c.tenant(c.overview))
	m.Handle("GET /instances/{name}/delete", c.op(c.deleteInstancePage))
	m.Handle("POST /instances/{name}/delete", c.op(c.deleteInstance))
	m.Handle("GET /instances/{name}/policies", c.tenant(c.policyList))
	m.Handle("POST /instances/{name}/policies", c.tenant(c.setPolicy))
	m.Handle("POST /instances/{name}/policies/remove", c.tenant(c.removePolicy))
	m.Handle("POST /instances/{name}/policies/regenerate", c.tenant(c.regeneratePolicyKey))
	m.Handle("GET /instances/{name}/enrollments/{id}", c.tenant(c.enrollmentPage))
	m.Handle("GET /instances/{name}/groups/{id}", c.tenant(c.groupPage))
	m.Handle("GET /instances/{name}/enrollments", c.tenant(c.enrollmentList))
	m.Handle("POST /instances/{name}/enrollments", c.tenant(c.createEnrollment))
	m.Handle("POST /instances/{name}/enrollments/disable", c.tenant(c.disableEnrollment))
	m.Handle("POST /instances/{name}/enrollments/delete", c.tenant(c.deleteEnrollment))
	m.Handle("GET /instances/{name}/groups", c.tenant(c.groupList))
	m.Handle("POST /instances/{name}/groups", c.tenant(c.createGroup))
	m.Handle("POST /instances/{name}/groups/disable", c.tenant(c.disableGroup))
	m.Handle("POST /instances/{name}/groups/delete", c.tenant(c.deleteGroup))
	m.Handle("GET /instances/{name}/registrations", c.tenant(c.registrations))
	m.Handle("POST /instances/{name}/registrations/delete", c.tenant(c.deleteRegistration))
	m.Handle("GET /instances/{name}/hubs", c.tenant(c.hubList))
	m.Handle("POST /instances/{name}/hubs", c.tenant(c.addHub))
	m.Handle("POST /instances/{name}/hubs/remove", c.tenant(c.removeHub))
	m.Handle("GET /instances/{name}/certificates", c.tenant(c.certList))
	m.Handle("POST /instances/{name}/certificates", c.tenant(c.uploadCert))
	m.Handle("POST /instances/{name}/certificates/code", c.tenant(c.certCode))
	m.Handle("POST /instances/{name}/certificates/verify", c.tenant(c.verifyCert))
	m.Handle("POST /instances/{name}/certificates/delete", c.tenant(c.deleteCert))
	m.Handle("GET /regions", c.op(c.regionView))
	m.Handle("GET /regions/failover", c.op(c.failoverPreview))
	m.Handle("POST /regions/failover", c.op(c.runFailover))
	m.Handle("GET /regions/failovers", c.op(c.failoverOps))
	m.Handle("GET /regions/failovers/{id}", c.op(c.failoverOpPage))
	m.Handle("GET /regions/lost-writes/{instance}/{epoch}", c.op(c.lostWritesPage))
	m.Handle("POST /regions/lost-writes/{instance}/{epoch}/delete", c.op(c.deleteLostWrites))
	m.Handle("POST /regions/fence", c.op(c.fence))
	m.Handle("/", c.auth(func(w http.ResponseWriter, r *http.Request, s *principal) error {
		return &pageError{Status: http.StatusNotFound, Msg: "There is no page at " + r.URL.Path + "."}
	}))
	c.mux = m
}

// FromManager adapts an instance.Manager and its store to Instances.
func FromManager(m *instance.Manager, st *store.Store) Instances { return managerInstances{m, st} }

type managerInstances struct {
	*instance.Manager
	st *store.Store
}

// ListAll lists every instance of the directory, in every ARM scope.
func (m managerInstances) ListAll(ctx context.Context) ([]*instance.View, error) {
	dirs, err := m.st.ListDirs(ctx)
	if err != nil {
		return nil, err
	}
	var out []*instance.View
	for _, d := range dirs {
		v, err := m.Get(ctx, d.Name)
		if errors.Is(err, instance.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
