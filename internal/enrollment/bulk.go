package enrollment

import (
	"context"
	"errors"
	"fmt"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Bulk operation modes (spec/dps-protocol.md §6.3). Clients spell
// updateIfMatchETag differently (Node: updateIfMatchEtag), so ParseBulkMode
// compares case-insensitively.
const (
	BulkCreate            = "create"            // fails per item (ErrExists) when the record exists
	BulkUpdate            = "update"            // creates or replaces, ignoring etags
	BulkUpdateIfMatchETag = "updateIfMatchETag" // replaces only when the item's etag matches (ErrPrecondition)
	BulkDelete            = "delete"            // removes; the item's etag is honoured when given
)

// ParseBulkMode returns the canonical spelling of a bulk mode.
func ParseBulkMode(mode string) (string, error) {
	m := canonical(mode, BulkCreate, BulkUpdate, BulkUpdateIfMatchETag, BulkDelete)
	if m == "" {
		return "", invalid("mode %q is not one of create, update, updateIfMatchETag, delete.", mode)
	}
	return m, nil
}

// ItemError is the failure of one item of a bulk operation. Err wraps
// ErrInvalid, ErrNotFound, ErrExists or ErrPrecondition.
type ItemError struct {
	ID  string // registrationId or enrollmentGroupId as sent ("" when missing)
	Err error
}

// BulkEnrollments applies mode to 1 to MaxBulkItems individual enrollments
// in one transaction: the items that pass are all written, the others are
// reported in the returned slice (empty when all passed). An invalid mode
// or item count is ErrInvalid; a storage failure writes nothing.
func (s *Service) BulkEnrollments(ctx context.Context, instance, mode string, items []*model.IndividualEnrollment) ([]ItemError, error) {
	return bulk(ctx, s, instance, kindEnrollment, mode, items)
}

// BulkGroups is BulkEnrollments for enrollment groups.
func (s *Service) BulkGroups(ctx context.Context, instance, mode string, items []*model.EnrollmentGroup) ([]ItemError, error) {
	return bulk(ctx, s, instance, kindGroup, mode, items)
}

func bulk[T any, P record[T]](ctx context.Context, s *Service, instance string, k kindInfo, mode string, items []P) ([]ItemError, error) {
	m, err := ParseBulkMode(mode)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 || len(items) > MaxBulkItems {
		return nil, invalid("a bulk operation takes 1 to %d items, not %d.", MaxBulkItems, len(items))
	}
	var failed []ItemError
	err = s.update(ctx, instance, func(tx *store.Tx) error {
		failed = []ItemError{}
		for i, it := range items {
			err := bulkItem(s, tx, instance, k, m, it)
			if err == nil {
				continue
			}
			if !isItemError(err) {
				return err
			}
			id := ""
			if it != nil {
				id = it.ID()
			}
			failed = append(failed, ItemError{ID: id, Err: fmt.Errorf("item %d: %w", i, err)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return failed, nil
}

func bulkItem[T any, P record[T]](s *Service, tx *store.Tx, instance string, k kindInfo, mode string, it P) error {
	if it == nil {
		return invalid("the %s is null.", k.what)
	}
	var err error
	switch mode {
	case BulkCreate:
		_, err = putTx(s, tx, instance, k, it, putCond{create: true})
	case BulkUpdate:
		_, err = putTx(s, tx, instance, k, it, putCond{})
	case BulkUpdateIfMatchETag:
		etag := it.Common().Etag
		if etag == "" {
			return fmt.Errorf("%w: mode updateIfMatchETag needs the etag of %s %q", ErrPrecondition, k.what, it.ID())
		}
		_, err = putTx(s, tx, instance, k, it, putCond{ifMatch: etag})
	case BulkDelete:
		err = deleteTx[T, P](tx, instance, k, it.ID(), it.Common().Etag)
	}
	return err
}

// isItemError reports whether err concerns one item rather than the
// whole operation.
func isItemError(err error) bool {
	for _, e := range []error{ErrInvalid, ErrNotFound, ErrExists, ErrPrecondition} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
