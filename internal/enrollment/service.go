package enrollment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Paging bounds of List* methods.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// MaxHubs bounds iotHubs of one enrollment (DPS links at most 50 hubs).
const MaxHubs = 50

// Service is the enrollment, enrollment group and registration-state logic
// of the service API over the store. It holds no state of its own and is
// safe for concurrent use.
type Service struct {
	st  *store.Store
	now func() time.Time
}

// New returns a Service over st.
func New(st *store.Store) *Service { return &Service{st: st, now: time.Now} }

// Store returns the store the service works on.
func (s *Service) Store() *store.Store { return s.st }

// kindInfo tells the generic record code which kind it handles.
type kindInfo struct {
	kind  string // store kind
	what  string // for messages
	field string // name of the id field
	group bool
}

var (
	kindEnrollment = kindInfo{kind: store.KindEnrollment, what: "enrollment", field: "registrationId"}
	kindGroup      = kindInfo{kind: store.KindGroup, what: "enrollment group", field: "enrollmentGroupId", group: true}
)

// record is a pointer to an enrollment or a group.
type record[T any] interface {
	*T
	model.Enrollment
}

// putCond is the precondition of a write.
type putCond struct {
	ifMatch string // If-Match value; "" imposes nothing
	create  bool   // the record must not exist (bulk create)
}

// update runs fn in a fenced transaction on instance, mapping a missing
// instance to ErrInstanceNotFound.
func (s *Service) update(ctx context.Context, instance string, fn func(*store.Tx) error) error {
	err := s.st.Update(ctx, instance, fn)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrInstanceNotFound, instance)
	}
	return err
}

// timestamp returns the service's notion of now, as stored in records.
func (s *Service) timestamp() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

// clone deep-copies v through JSON, so that a transaction retry starts
// from the caller's input again and the caller's value is never changed.
func clone[T any](v *T) (*T, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out := new(T)
	return out, json.Unmarshal(b, out)
}

func getRecord[T any, P record[T]](ctx context.Context, s *Service, instance string, k kindInfo, id string) (P, error) {
	if err := ValidateID(k.field, id); err != nil {
		return nil, err
	}
	v := P(new(T))
	ok, err := s.st.GetFenced(ctx, instance, store.Key(instance, k.kind, id), v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(k.what, id)
	}
	return v, nil
}

// putTx validates in and writes it in tx, returning what was stored.
func putTx[T any, P record[T]](s *Service, tx *store.Tx, instance string, k kindInfo, in P, cond putCond) (P, error) {
	if in == nil {
		return nil, invalid("the %s is missing.", k.what)
	}
	if err := ValidateID(k.field, in.ID()); err != nil {
		return nil, err
	}
	key := store.Key(instance, k.kind, in.ID())
	old := P(new(T))
	exists, err := tx.Get(key, old)
	if err != nil {
		return nil, err
	}
	if cond.create && exists {
		return nil, fmt.Errorf("%w: %s %q", ErrExists, k.what, in.ID())
	}
	if err := checkIfMatch(cond.ifMatch, exists, old.Common().Etag, k.what, in.ID()); err != nil {
		return nil, err
	}
	e, err := clone[T](in)
	if err != nil {
		return nil, err
	}
	var oldAtt *model.AttestationMechanism
	if exists {
		oldAtt = old.Common().Attestation
	}
	if err := s.prepare(tx, instance, k, P(e), oldAtt); err != nil {
		return nil, err
	}
	c, now := P(e).Common(), s.timestamp()
	c.CreatedDateTimeUTC, c.LastUpdatedDateTimeUTC, c.Etag = &now, &now, NewEtag()
	if exists && old.Common().CreatedDateTimeUTC != nil {
		c.CreatedDateTimeUTC = old.Common().CreatedDateTimeUTC
	}
	return P(e), tx.Put(key, e)
}

// prepare validates and completes a record about to be stored.
func (s *Service) prepare(tx *store.Tx, instance string, k kindInfo, e model.Enrollment, oldAtt *model.AttestationMechanism) error {
	if ie, ok := e.(*model.IndividualEnrollment); ok {
		ie.RegistrationState = nil
		if err := ValidateDeviceID(ie.DeviceID); err != nil {
			return err
		}
		if err := requireObject("optionalDeviceInformation", ie.OptionalDeviceInformation); err != nil {
			return err
		}
	}
	c := e.Common()
	if err := normalizeCommon(c); err != nil {
		return err
	}
	ac := attestCtx{tx: tx, instance: instance, group: k.group, old: oldAtt}
	if err := ac.prepareAttestation(c.Attestation); err != nil {
		return err
	}
	return checkHubs(tx, instance, c)
}

// checkHubs requires every named hub to be linked to the instance, and the
// static policy to name exactly one.
func checkHubs(tx *store.Tx, instance string, c *model.EnrollmentCommon) error {
	if len(c.IoTHubs) > MaxHubs {
		return invalid("iotHubs names more than %d hubs.", MaxHubs)
	}
	names := c.IoTHubs
	if c.IoTHubHostName != "" {
		names = append(names[:len(names):len(names)], c.IoTHubHostName)
	}
	for _, h := range names {
		if h == "" || len(h) > 253 || strings.Contains(h, "/") {
			return invalid("iotHubs: %q is not a host name.", h)
		}
		var hub model.LinkedHub
		ok, err := tx.Get(store.Key(instance, store.KindHub, h), &hub)
		if err != nil {
			return err
		}
		if !ok {
			return invalid("IoT hub %q is not linked to this provisioning service.", h)
		}
	}
	if c.AllocationPolicy == model.AllocationStatic && len(c.IoTHubs) != 1 && !(len(c.IoTHubs) == 0 && c.IoTHubHostName != "") {
		return invalid("allocationPolicy static requires exactly one hub in iotHubs.")
	}
	return nil
}

// deleteTx removes a record in tx, honouring ifMatch.
func deleteTx[T any, P record[T]](tx *store.Tx, instance string, k kindInfo, id, ifMatch string) error {
	if err := ValidateID(k.field, id); err != nil {
		return err
	}
	key := store.Key(instance, k.kind, id)
	old := P(new(T))
	exists, err := tx.Get(key, old)
	if err != nil {
		return err
	}
	if !exists {
		return notFound(k.what, id)
	}
	if err := checkIfMatch(ifMatch, true, old.Common().Etag, k.what, id); err != nil {
		return err
	}
	tx.Delete(key)
	return nil
}

// listRecords returns one page of records of a kind, after the record id
// after ("" for the first page). next is the id to pass as after for the
// following page, "" on the last page.
func listRecords[T any](ctx context.Context, s *Service, instance, kind, after string, limit int) ([]*T, string, error) {
	limit = pageSize(limit)
	prefix := store.KindPrefix(instance, kind)
	afterKey := ""
	if after != "" {
		afterKey = prefix + strings.ToLower(after)
	}
	p, err := s.st.ListFenced(ctx, instance, prefix, afterKey, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]*T, 0, len(p.Values))
	for _, b := range p.Values {
		v := new(T)
		if err := json.Unmarshal(b, v); err != nil {
			return nil, "", fmt.Errorf("enrollment: stored %s record: %w", kind, err)
		}
		out = append(out, v)
	}
	return out, strings.TrimPrefix(p.Next, prefix), nil
}

// pageSize clamps a requested page size to [1, MaxPageSize], 0 or less
// meaning DefaultPageSize.
func pageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}
