package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// bulkChunk is the most items a bulk operation takes (spec §9).
const bulkChunk = 10

// setupParallelism bounds concurrent service API calls of setup and
// cleanup.
const setupParallelism = 8

// fleet is the devices of a run and their keys.
type fleet struct {
	runID   string
	groupID string   // "" for individual enrollments
	ids     []string // registration ids
	keys    []string // device keys (derived from the group key for a group)
}

// DeviceID returns the registration id of device i of run runID.
func DeviceID(runID string, i int) string { return "bench-" + runID + "-" + strconv.Itoa(i) }

func newRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func randomKey() string {
	b := make([]byte, 64)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// setup creates the enrollments of the run through the service API.
func setup(ctx context.Context, cfg *Config, svc *dpsclient.Service) (*fleet, error) {
	f := &fleet{runID: cfg.RunID, ids: make([]string, cfg.Devices), keys: make([]string, cfg.Devices)}
	master := randomKey()
	for i := range f.ids {
		f.ids[i] = DeviceID(cfg.RunID, i)
	}
	if cfg.Enrollment == EnrollmentGroup {
		return f, f.createGroup(ctx, svc, master)
	}
	return f, f.createIndividual(ctx, cfg, svc, master)
}

func (f *fleet) createGroup(ctx context.Context, svc *dpsclient.Service, master string) error {
	f.groupID = "bench-" + f.runID
	g, err := svc.CreateOrUpdateGroup(ctx, &dpsclient.EnrollmentGroup{EnrollmentGroupID: f.groupID,
		EnrollmentCommon: dpsclient.EnrollmentCommon{ProvisioningStatus: model.StatusEnabled,
			Attestation: &dpsclient.AttestationMechanism{Type: model.AttestationSymmetricKey,
				SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: master, SecondaryKey: randomKey()}}}})
	if err != nil {
		return fmt.Errorf("bench: create enrollment group %s: %w", f.groupID, err)
	}
	if a := g.Attestation; a != nil && a.SymmetricKey != nil && a.SymmetricKey.PrimaryKey != "" {
		master = a.SymmetricKey.PrimaryKey // the service's view wins
	}
	for i, id := range f.ids {
		if f.keys[i], err = sas.DeriveKey(master, id); err != nil {
			return fmt.Errorf("bench: group key: %w", err)
		}
	}
	return nil
}

// createIndividual creates one enrollment per device with bulk creates of
// 10, each device's key derived from a run secret.
func (f *fleet) createIndividual(ctx context.Context, cfg *Config, svc *dpsclient.Service, master string) error {
	for i, id := range f.ids {
		f.keys[i], _ = sas.DeriveKey(master, id)
	}
	var done atomic.Int64
	return forEachChunk(ctx, len(f.ids), func(ctx context.Context, lo, hi int) error {
		items := make([]*dpsclient.IndividualEnrollment, 0, hi-lo)
		for i := lo; i < hi; i++ {
			second, _ := sas.DeriveKey(master, f.ids[i]+"/secondary")
			items = append(items, &dpsclient.IndividualEnrollment{RegistrationID: f.ids[i],
				EnrollmentCommon: dpsclient.EnrollmentCommon{ProvisioningStatus: model.StatusEnabled,
					Attestation: &dpsclient.AttestationMechanism{Type: model.AttestationSymmetricKey,
						SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: f.keys[i], SecondaryKey: second}}}})
		}
		if err := bulk(ctx, svc, "create", items); err != nil {
			return err
		}
		if n := done.Add(int64(hi - lo)); n%1000 < bulkChunk {
			cfg.Logger.Info("enrollments created", "count", n, "of", len(f.ids))
		}
		return nil
	})
}

func bulk(ctx context.Context, svc *dpsclient.Service, mode string, items []*dpsclient.IndividualEnrollment) error {
	res, err := svc.BulkEnrollments(ctx, mode, items)
	if err != nil {
		return fmt.Errorf("bench: bulk %s: %w", mode, err)
	}
	if !res.IsSuccessful {
		e := "?"
		if len(res.Errors) > 0 {
			e = fmt.Sprintf("%s: %d %s", res.Errors[0].RegistrationID, res.Errors[0].ErrorCode, res.Errors[0].ErrorStatus)
		}
		return fmt.Errorf("bench: bulk %s: %d item(s) failed, first %s", mode, len(res.Errors), e)
	}
	return nil
}

// cleanup deletes the registration records of the devices that
// registered, then the enrollments. It goes on after errors and returns
// the first.
func (f *fleet) cleanup(ctx context.Context, svc *dpsclient.Service, registered func(i int) bool) error {
	var mu sync.Mutex
	var first error
	keep := func(err error) {
		if err != nil && !errors.Is(err, dpsclient.ErrServiceNotFound) {
			mu.Lock()
			first = cmp(first, err)
			mu.Unlock()
		}
	}
	forEachChunk(ctx, len(f.ids), func(ctx context.Context, lo, hi int) error {
		var items []*dpsclient.IndividualEnrollment
		for i := lo; i < hi; i++ {
			if registered(i) {
				keep(svc.DeleteRegistration(ctx, f.ids[i], ""))
			}
			items = append(items, &dpsclient.IndividualEnrollment{RegistrationID: f.ids[i]})
		}
		if f.groupID == "" {
			keep(bulk(ctx, svc, "delete", items))
		}
		return ctx.Err()
	})
	if f.groupID != "" {
		keep(svc.DeleteGroup(ctx, f.groupID, ""))
	}
	return first
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// forEachChunk calls fn on [lo, hi) chunks of bulkChunk items of [0, n),
// setupParallelism at a time, and returns the first error (which stops
// the chunks not yet started) or the context's.
func forEachChunk(ctx context.Context, n int, fn func(ctx context.Context, lo, hi int) error) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var first error
	sem := make(chan struct{}, setupParallelism)
	var wg sync.WaitGroup
	for lo := 0; lo < n && ctx.Err() == nil; lo += bulkChunk {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, lo, min(lo+bulkChunk, n)); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return parent.Err()
}
