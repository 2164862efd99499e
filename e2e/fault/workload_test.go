package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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
	workers         = 12
	enrollmentKeys  = 6 // per epoch (keys rotate at every fault)
	serviceTimeout  = 3 * time.Second
	registerTimeout = 8 * time.Second
	probeInterval   = 200 * time.Millisecond
	probeTimeout    = 500 * time.Millisecond
	ejectFor        = time.Second
	patience        = 250 * time.Millisecond // a stream waits this long before its next request
	outstanding     = 4                      // requests a stream may have out at once
	groupID         = "fault-group"
)

// workload drives every node of a cluster the way a fleet behind a load
// balancer would: workers pick nodes round-robin among those whose
// readiness probe passes (and that did not just fail them), and issue
// registrations, enrollment writes and reads.
type workload struct {
	c        *cluster.Cluster
	seed     int64
	h        *History
	svc      []*dpsclient.Service
	scope    string
	groupKey string

	epoch  atomic.Int64 // enrollment key generation; bumped at every fault
	values atomic.Int64 // unique values written
	up     []atomic.Bool

	devMu   sync.Mutex
	devices []string // guarded by devMu: every device a register was issued for

	probeMu sync.Mutex
	probes  []string // guarded by probeMu: readiness changes seen by the balancer
}

func newWorkload(ctx context.Context, c *cluster.Cluster, seed int64) (*workload, error) {
	w := &workload{c: c, seed: seed, h: newHistory(), scope: c.IDScope(), up: make([]atomic.Bool, c.N())}
	for i := range c.N() {
		w.svc = append(w.svc, c.Service(i))
		w.up[i].Store(true)
	}
	g := &dpsclient.EnrollmentGroup{EnrollmentGroupID: groupID}
	g.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	for {
		gctx, cancel := context.WithTimeout(ctx, serviceTimeout)
		got, err := w.svc[0].CreateOrUpdateGroup(gctx, g)
		cancel()
		if err == nil && got.Attestation != nil && got.Attestation.SymmetricKey != nil {
			w.groupKey = got.Attestation.SymmetricKey.PrimaryKey
			return w, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create enrollment group: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run drives the cluster until ctx ends, then waits for the operations in
// flight (each bounded by its own deadline).
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range w.c.N() {
		wg.Go(func() { w.probe(ctx, i) })
	}
	for id := range workers {
		wg.Go(func() { w.worker(ctx, id) })
	}
	wg.Wait()
}

// probeLog returns the readiness changes the balancer saw.
func (w *workload) probeLog() []string {
	w.probeMu.Lock()
	defer w.probeMu.Unlock()
	return slices.Clone(w.probes)
}

// probe is the load balancer's health check of node i.
func (w *workload) probe(ctx context.Context, i int) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := w.c.Ready(pctx, i)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if was := w.up[i].Swap(err == nil); was != (err == nil) {
			w.probeMu.Lock()
			w.probes = append(w.probes, fmt.Sprintf("%v node%d ready=%v %v", w.h.Now().Round(time.Millisecond), i+1, err == nil, err))
			w.probeMu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// worker is one stream of the fleet. It sends a request, waits for the
// answer up to patience, then goes on with the next one while a slow
// request finishes in the background (at most outstanding per stream):
// devices are independent, so one hung on a dead zone does not stop the
// others, and throughput measures the region rather than the clients'
// patience. A node that failed or was slow is avoided for ejectFor.
func (w *workload) worker(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(uint64(w.seed), uint64(id)))
	ejected := make([]time.Time, w.c.N())
	slots := make(chan int, outstanding)
	for s := range outstanding {
		slots <- s
	}
	defer func() { // wait for the requests still out
		for range outstanding {
			<-slots
		}
	}()
	next, devices := id, 0
	for {
		var slot int
		select {
		case <-ctx.Done():
			return
		case slot = <-slots:
		}
		r := request{worker: id, client: id*outstanding + slot, node: w.pick(&next, ejected)}
		w.plan(rng, &r, &devices)
		done := make(chan history.Outcome, 1)
		go func() {
			done <- w.do(r).Outcome
			slots <- slot
		}()
		select {
		case o := <-done:
			if o != history.OK {
				ejected[r.node] = time.Now().Add(ejectFor)
			}
		case <-time.After(patience):
			ejected[r.node] = time.Now().Add(ejectFor)
		}
	}
}

// request is one planned operation.
type request struct {
	worker, client, node int
	kind                 history.Kind
	key, value           string
}

// plan picks the operation: 40% registrations of new devices, 25%
// enrollment puts, 20% enrollment reads, 15% registration reads of recent
// devices.
func (w *workload) plan(rng *rand.Rand, r *request, devices *int) {
	switch x := rng.IntN(100); {
	case x < 40:
		r.kind, r.key = history.Register, fmt.Sprintf("d-%d-%d-%d", w.seed, r.worker, *devices)
		*devices++
		w.devMu.Lock()
		w.devices = append(w.devices, r.key)
		w.devMu.Unlock()
	case x < 65:
		r.kind, r.key, r.value = history.EnrollmentPut, w.enrollmentKey(rng), fmt.Sprintf("v%d", w.values.Add(1))
	case x < 85:
		r.kind, r.key = history.EnrollmentGet, w.enrollmentKey(rng)
	default:
		w.devMu.Lock()
		if n := len(w.devices); n > 0 {
			r.kind, r.key = history.RegistrationGet, w.devices[n-1-rng.IntN(min(n, 32))] // in flight or just acknowledged
		} else {
			r.kind, r.key = history.EnrollmentGet, w.enrollmentKey(rng)
		}
		w.devMu.Unlock()
	}
}

func (w *workload) do(r request) Op {
	op := Op{Worker: r.client, Kind: r.kind, Key: r.key, Node: r.node, In: r.value}
	switch r.kind {
	case history.Register:
		return w.register(op)
	case history.EnrollmentPut:
		return w.putEnrollment(op)
	case history.EnrollmentGet:
		return w.getEnrollment(op)
	default:
		return w.getRegistration(op)
	}
}

// pick chooses the next node round-robin among the routable ones: probe
// passing and not ejected by this worker. With none routable it takes the
// next node anyway (the region is down: requests must still be tried).
func (w *workload) pick(next *int, ejected []time.Time) int {
	n, now := w.c.N(), time.Now()
	for range n {
		i := *next % n
		*next++
		if w.up[i].Load() && now.After(ejected[i]) {
			return i
		}
	}
	i := *next % n
	*next++
	return i
}

// enrollmentKey picks one of the current epoch's enrollment ids.
func (w *workload) enrollmentKey(rng *rand.Rand) string {
	return fmt.Sprintf("e-%d-%d-%d", w.seed, w.epoch.Load(), rng.IntN(enrollmentKeys))
}

func (w *workload) record(op Op, call time.Duration, err error, outcome history.Outcome) Op {
	op.Call, op.Return, op.Outcome = call, w.h.Now(), outcome
	if err != nil {
		op.Err = err.Error()
	}
	return w.h.Add(op)
}

func (w *workload) putEnrollment(op Op) Op {
	en := &dpsclient.IndividualEnrollment{RegistrationID: op.Key, DeviceID: op.In}
	en.Attestation = &model.AttestationMechanism{Type: model.AttestationSymmetricKey}
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	call := w.h.Now()
	got, err := w.svc[op.Node].CreateOrUpdateEnrollment(ctx, en)
	if err != nil {
		return w.record(op, call, err, history.Classify(err))
	}
	op.Out = got.DeviceID
	return w.record(op, call, nil, history.OK)
}

func (w *workload) getEnrollment(op Op) Op {
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	call := w.h.Now()
	got, err := w.svc[op.Node].GetEnrollment(ctx, op.Key)
	switch {
	case errors.Is(err, dpsclient.ErrServiceNotFound):
		op.Out = history.Absent
	case err != nil:
		return w.record(op, call, err, history.Failed) // a read without answer tells nothing
	default:
		op.Out = got.DeviceID
	}
	return w.record(op, call, nil, history.OK)
}

func (w *workload) register(op Op) Op {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	call := w.h.Now()
	res, err := dpsclient.Register(ctx, dpsclient.DeviceOptions{
		Endpoint: w.c.DeviceEndpoint(op.Node), IDScope: w.scope, RegistrationID: op.Key,
		GroupKey: w.groupKey, HTTPClient: w.c.DeviceHTTPClient(),
		PollInterval: 250 * time.Millisecond, RequestTimeout: serviceTimeout,
	})
	if err != nil {
		outcome := history.Unknown
		// Refused before any answer: the register call never reached the
		// engine. Anything later (polls) may follow a recorded assignment.
		if res != nil && res.Status == "" && history.Classify(err) == history.Failed {
			outcome = history.Failed
		}
		op.Out = history.AnyValue
		return w.record(op, call, err, outcome)
	}
	op.Out = history.RegistrationValue(res.State().Status, res.State().AssignedHub, res.State().DeviceID)
	return w.record(op, call, nil, history.OK)
}

func (w *workload) getRegistration(op Op) Op {
	ctx, cancel := context.WithTimeout(context.Background(), serviceTimeout)
	defer cancel()
	call := w.h.Now()
	st, err := w.svc[op.Node].GetRegistration(ctx, op.Key)
	switch {
	case errors.Is(err, dpsclient.ErrServiceNotFound):
		op.Out = history.Absent
	case err != nil:
		return w.record(op, call, err, history.Failed)
	default:
		op.Out = history.RegistrationValue(st.Status, st.AssignedHub, st.DeviceID)
	}
	return w.record(op, call, nil, history.OK)
}
