package enrollment

import (
	"context"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// GetEnrollment returns the individual enrollment regID (case-insensitive)
// of instance, with its secrets; ErrNotFound when there is none.
func (s *Service) GetEnrollment(ctx context.Context, instance, regID string) (*model.IndividualEnrollment, error) {
	return getRecord[model.IndividualEnrollment](ctx, s, instance, kindEnrollment, regID)
}

// PutEnrollment creates or replaces the individual enrollment
// e.RegistrationID and returns what was stored: validated, with keys
// generated when omitted (kept from the stored record on update),
// certificate info filled, timestamps and a new etag. A non-empty ifMatch
// must match the stored etag ("*": any), else ErrPrecondition; with
// ifMatch a missing enrollment is ErrPrecondition too. e is not modified.
func (s *Service) PutEnrollment(ctx context.Context, instance string, e *model.IndividualEnrollment, ifMatch string) (*model.IndividualEnrollment, error) {
	var out *model.IndividualEnrollment
	err := s.update(ctx, instance, func(tx *store.Tx) error {
		var err error
		out, err = putTx(s, tx, instance, kindEnrollment, e, putCond{ifMatch: ifMatch})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateEnrollment is PutEnrollment that never replaces: ErrExists when
// the enrollment exists, decided in the write's own transaction (two
// concurrent creates of one id: one wins, the other gets ErrExists).
func (s *Service) CreateEnrollment(ctx context.Context, instance string, e *model.IndividualEnrollment) (*model.IndividualEnrollment, error) {
	var out *model.IndividualEnrollment
	err := s.update(ctx, instance, func(tx *store.Tx) error {
		var err error
		out, err = putTx(s, tx, instance, kindEnrollment, e, putCond{create: true})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteEnrollment removes the individual enrollment regID, honouring
// ifMatch like PutEnrollment; ErrNotFound when there is none. The device's
// registration record, if any, is kept (delete it with DeleteRegistration).
func (s *Service) DeleteEnrollment(ctx context.Context, instance, regID, ifMatch string) error {
	return s.update(ctx, instance, func(tx *store.Tx) error {
		return deleteTx[model.IndividualEnrollment](tx, instance, kindEnrollment, regID, ifMatch)
	})
}

// ListEnrollments returns up to limit individual enrollments (0: 100, at
// most 1000) in case-folded registration id order, starting after the
// registration id after ("" for the first page). next is "" on the last
// page, else the after of the following page. A page is one key-range
// read, not a scan.
func (s *Service) ListEnrollments(ctx context.Context, instance, after string, limit int) (page []*model.IndividualEnrollment, next string, err error) {
	return listRecords[model.IndividualEnrollment](ctx, s, instance, store.KindEnrollment, after, limit)
}

// GetGroup returns the enrollment group groupID (case-insensitive) of
// instance, with its secrets; ErrNotFound when there is none.
func (s *Service) GetGroup(ctx context.Context, instance, groupID string) (*model.EnrollmentGroup, error) {
	return getRecord[model.EnrollmentGroup](ctx, s, instance, kindGroup, groupID)
}

// PutGroup creates or replaces the enrollment group g.EnrollmentGroupID,
// like PutEnrollment. Groups take symmetricKey or x509 attestation (signing
// certificates, or caReferences naming verified CA certificates of the
// instance), never tpm.
func (s *Service) PutGroup(ctx context.Context, instance string, g *model.EnrollmentGroup, ifMatch string) (*model.EnrollmentGroup, error) {
	var out *model.EnrollmentGroup
	err := s.update(ctx, instance, func(tx *store.Tx) error {
		var err error
		out, err = putTx(s, tx, instance, kindGroup, g, putCond{ifMatch: ifMatch})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CreateGroup is PutGroup that never replaces, like CreateEnrollment.
func (s *Service) CreateGroup(ctx context.Context, instance string, g *model.EnrollmentGroup) (*model.EnrollmentGroup, error) {
	var out *model.EnrollmentGroup
	err := s.update(ctx, instance, func(tx *store.Tx) error {
		var err error
		out, err = putTx(s, tx, instance, kindGroup, g, putCond{create: true})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteGroup removes the enrollment group groupID, honouring ifMatch;
// ErrNotFound when there is none. Registration records of its devices are
// kept.
func (s *Service) DeleteGroup(ctx context.Context, instance, groupID, ifMatch string) error {
	return s.update(ctx, instance, func(tx *store.Tx) error {
		return deleteTx[model.EnrollmentGroup](tx, instance, kindGroup, groupID, ifMatch)
	})
}

// ListGroups returns one page of enrollment groups, like ListEnrollments
// (after and next are group ids). The provisioning engine pages through it
// to try the symmetric-key groups of an instance.
func (s *Service) ListGroups(ctx context.Context, instance, after string, limit int) (page []*model.EnrollmentGroup, next string, err error) {
	return listRecords[model.EnrollmentGroup](ctx, s, instance, store.KindGroup, after, limit)
}
