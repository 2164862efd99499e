package dr

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opendps/opendps/dpstest/cluster"
	"github.com/opendps/opendps/dpstest/history"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Workload knobs.
const (
	serviceTimeout  = 3 * time.Second
	registerTimeout = 8 * time.Second
	enrollmentKeys  = 4 // enrollment ids per key generation
	individuals     = 6 // individual enrollments whose devices register
	pause           = 20 * time.Millisecond
)

// endpoint is where a workload sends one request: the front door or one
// region's node.
type endpoint struct {
	name   string // "frontdoor" or the region
	device string // host:port of the device API (HTTPS)
	mqtt   string // host:port of MQTT
	svc    *dpsclient.Service
}

// frontDoorEndpoint is instance's endpoint through the front door.
func frontDoorEndpoint(rs *cluster.Regions, fd interface{ Addr(string) string }, instance string, hc *http.Client) endpoint {
	in := rs.Instance(instance)
	host := instance + "." + cluster.LocalEndpoint(fd.Addr("service"))
	svc, err := dpsclient.NewService("HostName="+host+";SharedAccessKeyName="+in.KeyName+";SharedAccessKey="+in.Key, hc)
	if err != nil {
		panic(err)
	}
	return endpoint{name: "frontdoor", device: cluster.LocalEndpoint(fd.Addr("device")), mqtt: cluster.LocalEndpoint(fd.Addr("mqtt")), svc: svc}
}

// regionEndpoint is instance's endpoint on node i of region.
func regionEndpoint(rs *cluster.Regions, region, instance string, i int) endpoint {
	c := rs.Region(region)
	// MQTT goes through the front door only (the harness does not name a
	// node's MQTT port).
	return endpoint{name: region, device: c.DeviceEndpoint(i), svc: rs.Service(instance, region, i)}
}

// mix is the share (percent, cumulative order) of each operation kind.
type mix struct {
	groupRegister, indivRegister, put, get int // the rest: registration reads
}

var (
	writeMix = mix{groupRegister: 40, indivRegister: 15, put: 45}          // writes only
	fullMix  = mix{groupRegister: 30, indivRegister: 10, put: 30, get: 15} // + reads
)

// workload drives one instance through a set of endpoints with workers
// that each issue one request at a time, round-robin over the endpoints,
// and records every operation.
type workload struct {
	name     string
	h        *History
	instance string
	scope    string
	prefix   string // of every id ("" or the canary token)
	group    string
	groupKey string
	indiv    []indivDevice
	payload  json.RawMessage
	dhc      *http.Client
	mqttTLS  *tls.Config
	mix      mix
	workers  int

	gen    atomic.Int64 // key generation of enrollment ids and new devices
	values atomic.Int64

	mu  sync.Mutex
	eps []endpoint // guarded by mu

	devMu   sync.Mutex
	devices []string // guarded by devMu: devices a register was issued for

	stop context.CancelFunc
	done chan struct{}
}

// indivDevice is an individual enrollment with its key.
type indivDevice struct{ id, key string }

// deterministicKey is a base64 symmetric key derived from s.
func deterministicKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

type workloadConfig struct {
	name, instance, prefix string
	payload                json.RawMessage
	mix                    mix
	workers                int
	eps                    []endpoint
	setup                  *endpoint // where the enrollments are created (default eps[0])
}

// newWorkload creates the instance's enrollment group and individual
// enrollments (through cfg.eps[0], retried until ctx ends).
func newWorkload(ctx context.Context, rs *cluster.Regions, h *History, cfg workloadConfig) (*workload, error) {
	in := rs.Instance(cfg.instance)
	tc, err := dpsclient.DeviceTLSConfig(rs.CAFile(), nil)
	if err != nil {
		return nil, err
	}
	w := &workload{name: cfg.name, h: h, instance: cfg.instance, scope: in.IDScope, prefix: cfg.prefix, payload: cfg.payload,
		dhc: rs.Region(rs.Names()[0]).DeviceHTTPClient(), mqttTLS: tc, mix: cfg.mix, workers: cfg.workers, eps: cfg.eps,
		group: cfg.prefix + cfg.name + "-grp"}
	w.groupKey = deterministicKey(w.group + "/" + in.IDScope)
	svc := cfg.eps[0].svc
	if cfg.setup != nil {
		svc = cfg.setup.svc
	}
	setup := func(f func(context.Context) error) error {
		for {
			sctx, cancel := context.WithTimeout(ctx, serviceTimeout)
			err := f(sctx)
			cancel()
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	g := &dpsclient.EnrollmentGroup{EnrollmentGroupID: w.group}
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey,
		SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: w.groupKey, SecondaryKey: deterministicKey(w.group + "/2")}}
	if err := setup(func(ctx context.Context) error { _, err := svc.CreateOrUpdateGroup(ctx, g); return err }); err != nil {
		return nil, fmt.Errorf("%s: enrollment group: %w", cfg.name, err)
	}
	for i := range individuals {
		d := indivDevice{id: fmt.Sprintf("%s%s-ind-%d", cfg.prefix, cfg.name, i)}
		d.key = deterministicKey(d.id + "/" + in.IDScope)
		e := &dpsclient.IndividualEnrollment{RegistrationID: d.id, DeviceID: d.id}
		e.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey,
			SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: d.key, SecondaryKey: deterministicKey(d.id + "/2")}}
		if err := setup(func(ctx context.Context) error { _, err := svc.CreateOrUpdateEnrollment(ctx, e); return err }); err != nil {
			return nil, fmt.Errorf("%s: enrollment %s: %w", cfg.name, d.id, err)
		}
		w.indiv = append(w.indiv, d)
	}
	return w, nil
}

// canaryKeys are the symmetric keys of the workload (for the residency
// scan).
func (w *workload) canaryKeys() []string {
	keys := []string{w.groupKey, deterministicKey(w.group + "/2")}
	for _, d := range w.indiv {
		keys = append(keys, d.key, deterministicKey(d.id+"/2"))
	}
	return keys
}

// setEndpoints replaces the endpoints of the next requests.
func (w *workload) setEndpoints(eps ...endpoint) {
	w.mu.Lock()
	w.eps = eps
	w.mu.Unlock()
}

func (w *workload) endpoint(n int) endpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.eps[n%len(w.eps)]
}

// start runs the workers until stopWait.
func (w *workload) start(seed uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		var wg sync.WaitGroup
		for id := range w.workers {
			wg.Go(func() { w.worker(ctx, seed, id) })
		}
		wg.Wait()
	}()
}

// stopWait stops the workers and waits for the requests in flight (each
// bounded by its own deadline).
func (w *workload) stopWait() {
	if w.stop != nil {
		w.stop()
		<-w.done
		w.stop = nil
	}
}

// nextGeneration makes the next requests use fresh enrollment ids and
// device ids, so that the writes before and after an event never share a
// key.
func (w *workload) nextGeneration() { w.gen.Add(1) }

func (w *workload) worker(ctx context.Context, seed uint64, id int) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	n := id
	devices := 0
	for ctx.Err() == nil {
		ep := w.endpoint(n)
		n++
		w.do(rng, id, ep, &devices)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (w *workload) do(rng *rand.Rand, worker int, ep endpoint, devices *int) {
	op := Op{Worker: worker, Load: w.name, Via: ep.name}
	gen := w.gen.Load()
	m := w.mix
	switch x := rng.IntN(100); {
	case x < m.groupRegister:
		op.Kind, op.Key = history.Register, fmt.Sprintf("%s%s-g-%d-%d-%d", w.prefix, w.name, gen, worker, *devices)
		*devices++
		w.devMu.Lock()
		w.devices = append(w.devices, op.Key)
		w.devMu.Unlock()
		w.register(w.h, op, ep, "", *devices%4 == 0 && ep.mqtt != "")
	case x < m.groupRegister+m.indivRegister:
		d := w.indiv[rng.IntN(len(w.indiv))]
		op.Kind, op.Key = history.Register, d.id
		w.register(w.h, op, ep, d.key, rng.IntN(4) == 0 && ep.mqtt != "")
	case x < m.groupRegister+m.indivRegister+m.put:
		op.Kind, op.Key = history.EnrollmentPut, w.enrollmentKey(gen, rng)
		op.In = fmt.Sprintf("%s%s-v%d", w.prefix, w.name, w.values.Add(1))
		w.putEnrollment(op, ep)
	case x < m.groupRegister+m.indivRegister+m.put+m.get:
		op.Kind, op.Key = history.EnrollmentGet, w.enrollmentKey(gen, rng)
		w.getEnrollment(op, ep)
	default:
		w.devMu.Lock()
		if k := len(w.devices); k > 0 {
			op.Key = w.devices[k-1-rng.IntN(min(k, 32))]
		}
		w.devMu.Unlock()
		if op.Key == "" {
			return
		}
		op.Kind = history.RegistrationGet
		w.getRegistration(op, ep)
	}
}

// enrollmentKey is one of generation gen's enrollment ids. Every id
// carries the workload's name: workloads never share a key.
func (w *workload) enrollmentKey(gen int64, rng *rand.Rand) string {
	return fmt.Sprintf("%s%s-e-%d-%d", w.prefix, w.name, gen, rng.IntN(enrollmentKeys))
}

func (w *workload) record(op Op, err error, outcome history.Outcome) Op {
	return record(w.h, op, err, outcome)
}

func record(h *History, op Op, err error, outcome history.Outcome) Op {
	op.Return, op.Outcome = time.Now(), outcome
	if err != nil {
		op.Err = err.Error()
	}
	return h.Add(op)
}

func (w *workload) putEnrollment(op Op, ep endpoint) Op {
	en := &dpsclient.IndividualEnrollment{RegistrationID: op.Key, DeviceID: op.In}
	en.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	op.Call = time.Now()
	got, err := ep.svc.CreateOrUpdateEnrollment(ctx, en)
	if err != nil {
		return w.record(op, err, history.Classify(err))
	}
	op.Out = got.DeviceID
	return w.record(op, nil, history.OK)
}

func (w *workload) getEnrollment(op Op, ep endpoint) Op {
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	op.Call = time.Now()
	got, err := ep.svc.GetEnrollment(ctx, op.Key)
	switch {
	case errors.Is(err, dpsclient.ErrServiceNotFound):
		op.Out = history.Absent
	case err != nil:
		return w.record(op, err, history.Failed) // a read without answer tells nothing
	default:
		op.Out = got.DeviceID
	}
	return w.record(op, nil, history.OK)
}

func (w *workload) getRegistration(op Op, ep endpoint) Op {
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	op.Call = time.Now()
	st, err := ep.svc.GetRegistration(ctx, op.Key)
	switch {
	case errors.Is(err, dpsclient.ErrServiceNotFound):
		op.Out = history.Absent
	case err != nil:
		return w.record(op, err, history.Failed)
	default:
		op.Out = history.RegistrationValue(st.Status, st.AssignedHub, st.DeviceID)
	}
	return w.record(op, nil, history.OK)
}

// register registers op.Key over HTTPS or MQTT, with the individual key
// (indivKey) or a key derived from the group's.
func (w *workload) register(h *History, op Op, ep endpoint, indivKey string, mqtt bool) Op {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	opts := dpsclient.DeviceOptions{IDScope: w.scope, RegistrationID: op.Key, Payload: w.payload,
		PollInterval: 250 * time.Millisecond, RequestTimeout: serviceTimeout}
	if indivKey != "" {
		opts.SymmetricKey = indivKey
	} else {
		opts.GroupKey = w.groupKey
	}
	op.Proto = "https"
	if mqtt {
		op.Proto, opts.Protocol, opts.Endpoint, opts.TLSConfig = "mqtt", dpsclient.ProtocolMQTT, ep.mqtt, w.mqttTLS
	} else {
		opts.Endpoint, opts.HTTPClient = ep.device, w.dhc
	}
	op.Call = time.Now()
	res, err := dpsclient.Register(ctx, opts)
	if err != nil {
		outcome := history.Unknown
		// Refused before any answer: the register call never reached the
		// engine. Anything later (polls) may follow a recorded assignment.
		if res != nil && res.Status == "" && history.Classify(err) == history.Failed {
			outcome = history.Failed
		}
		op.Out = history.AnyValue
		return record(h, op, err, outcome)
	}
	op.Out = history.RegistrationValue(res.State().Status, res.State().AssignedHub, res.State().DeviceID)
	return record(h, op, nil, history.OK)
}

// registerOnce registers one device (a recheck after a failover) and
// returns the result as an Op, not recorded in any history.
func (w *workload) registerOnce(ep endpoint, id, indivKey string) Op {
	return w.register(&History{}, Op{Load: w.name + "-recheck", Kind: history.Register, Key: id, Via: ep.name}, ep, indivKey, false)
}

// indivKey is the key of individual device id ("" for a group device).
func (w *workload) indivKey(id string) string {
	for _, d := range w.indiv {
		if d.id == id {
			return d.key
		}
	}
	return ""
}
