package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// opMarker is written for a registration that did not finish within the
// fast-path budget, so that any node can answer its polls. It expires with
// an etcd lease; its Deadline says when the work is given up. When the
// work ends, the marker is written again with its Outcome, so that the
// operation is answered even after the registration record was
// overwritten by another registration of the same device.
type opMarker struct {
	RegistrationID string                             `json:"registrationId"`
	Started        time.Time                          `json:"started"`
	Deadline       time.Time                          `json:"deadline"`
	Outcome        *model.RegistrationOperationStatus `json:"outcome,omitempty"`
}

// newOperationID returns an id shaped like DPS's ("<digit>.<16 hex>.<GUID>"),
// free of characters that MQTT topics and URL paths care about.
func newOperationID() string {
	var b [8]byte
	rand.Read(b[:])
	return "5." + hex.EncodeToString(b[:]) + "." + uuid.NewString()
}

// markerLeases hands out a lease for op markers, renewed by rotation: a
// new lease every rotate, each living ttl, so markers disappear on their
// own without a janitor.
type markerLeases struct {
	st     *store.Store
	ttl    time.Duration
	rotate time.Duration

	mu      sync.Mutex
	id      clientv3.LeaseID // guarded by mu
	granted time.Time        // guarded by mu
}

func (m *markerLeases) lease(ctx context.Context) (clientv3.LeaseID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.id != 0 && time.Since(m.granted) < m.rotate {
		return m.id, nil
	}
	id, err := m.st.Grant(ctx, m.ttl) // bounded attempts: a grant on a dead leader fails over
	if err != nil {
		return 0, err
	}
	m.id, m.granted = id, time.Now()
	return m.id, nil
}

// putMarker records that operationID of regID is still running.
func (e *Engine) putMarker(ctx context.Context, instance, opID string, m opMarker) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StoreTimeout)
	defer cancel()
	lease, err := e.leases.lease(ctx)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(m)
	// Bounded attempts, retried: a put on a dead leader fails over (store/retry.go).
	return e.store.Put(ctx, store.Key(instance, store.KindOperation, opID), string(b), clientv3.WithLease(lease))
}

// getMarker returns the marker of opID and its mod revision, or nil.
func (e *Engine) getMarker(ctx context.Context, instance, opID string) (*opMarker, int64, error) {
	var m opMarker
	rev, _, err := e.store.GetRev(ctx, store.Key(instance, store.KindOperation, opID), &m, false)
	if err != nil || rev == 0 {
		return nil, 0, err
	}
	return &m, rev, nil
}
