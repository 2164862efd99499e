package enrollment

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

var kindRegistration = kindInfo{kind: store.KindRegistration, what: "registration", field: "registrationId"}

// groupIndexPrefix is the prefix of the reggrp index entries of a group.
func groupIndexPrefix(instance, groupID string) string {
	return store.KindPrefix(instance, store.KindGroupRegistration) + strings.ToLower(groupID) + "/"
}

// groupIndexKey is the reggrp index entry of one registration.
func groupIndexKey(instance, groupID, regID string) string {
	return store.Key(instance, store.KindGroupRegistration, groupID+"/"+regID)
}

// GetRegistration returns the registration record regID
// (case-insensitive); ErrNotFound when the device never registered or its
// record was deleted.
func (s *Service) GetRegistration(ctx context.Context, instance, regID string) (*model.Registration, error) {
	if err := ValidateID(kindRegistration.field, regID); err != nil {
		return nil, err
	}
	var r model.Registration
	ok, err := s.st.GetFenced(ctx, instance, store.Key(instance, store.KindRegistration, regID), &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, notFound(kindRegistration.what, regID)
	}
	return &r, nil
}

// PutRegistration writes the registration record r in its own
// transaction; see PutRegistrationTx.
func (s *Service) PutRegistration(ctx context.Context, instance string, r *model.Registration) (*model.Registration, error) {
	var out *model.Registration
	err := s.update(ctx, instance, func(tx *store.Tx) error {
		var err error
		out, err = s.PutRegistrationTx(tx, instance, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutRegistrationTx writes the registration record r in tx (so that the
// provisioning engine can commit it with other writes) and returns what
// will be stored: a new etag, lastUpdatedDateTimeUtc now, and
// createdDateTimeUtc kept from the stored record (else r's, else now). It
// maintains the reggrp index: an entry under r.EnrollmentGroupID, and the
// entry under a previous, different group removed. r is not modified.
func (s *Service) PutRegistrationTx(tx *store.Tx, instance string, r *model.Registration) (*model.Registration, error) {
	if r == nil {
		return nil, invalid("the registration is missing.")
	}
	if err := ValidateID(kindRegistration.field, r.RegistrationID); err != nil {
		return nil, err
	}
	if r.EnrollmentGroupID != "" {
		if err := ValidateID(kindGroup.field, r.EnrollmentGroupID); err != nil {
			return nil, err
		}
	}
	out, err := clone(r)
	if err != nil {
		return nil, err
	}
	key := store.Key(instance, store.KindRegistration, r.RegistrationID)
	var old model.Registration
	exists, err := tx.Get(key, &old)
	if err != nil {
		return nil, err
	}
	now := s.timestamp()
	out.Etag, out.LastUpdatedDateTimeUTC = NewEtag(), &now
	switch {
	case exists && old.CreatedDateTimeUTC != nil:
		out.CreatedDateTimeUTC = old.CreatedDateTimeUTC
	case out.CreatedDateTimeUTC == nil:
		out.CreatedDateTimeUTC = &now
	}
	if exists && old.EnrollmentGroupID != "" && !strings.EqualFold(old.EnrollmentGroupID, out.EnrollmentGroupID) {
		tx.Delete(groupIndexKey(instance, old.EnrollmentGroupID, old.RegistrationID))
	}
	if out.EnrollmentGroupID != "" {
		if err := tx.Put(groupIndexKey(instance, out.EnrollmentGroupID, out.RegistrationID), ""); err != nil {
			return nil, err
		}
	}
	return out, tx.Put(key, out)
}

// DeleteRegistration removes the registration record regID and its reggrp
// index entry, honouring ifMatch like DeleteEnrollment; ErrNotFound when
// there is none. The device identity in its hub is not touched.
func (s *Service) DeleteRegistration(ctx context.Context, instance, regID, ifMatch string) error {
	if err := ValidateID(kindRegistration.field, regID); err != nil {
		return err
	}
	return s.update(ctx, instance, func(tx *store.Tx) error {
		key := store.Key(instance, store.KindRegistration, regID)
		var old model.Registration
		exists, err := tx.Get(key, &old)
		if err != nil {
			return err
		}
		if !exists {
			return notFound(kindRegistration.what, regID)
		}
		if err := checkIfMatch(ifMatch, true, old.Etag, kindRegistration.what, regID); err != nil {
			return err
		}
		tx.Delete(key)
		if old.EnrollmentGroupID != "" {
			tx.Delete(groupIndexKey(instance, old.EnrollmentGroupID, old.RegistrationID))
		}
		return nil
	})
}

// ListGroupRegistrations returns one page of the registration records of
// the devices of enrollment group groupID, through the reggrp index, like
// ListEnrollments (after and next are registration ids). A page may hold
// fewer than limit records when index entries are stale; next still says
// whether more follow. An unknown group has no registrations.
func (s *Service) ListGroupRegistrations(ctx context.Context, instance, groupID, after string, limit int) (page []*model.Registration, next string, err error) {
	if err := ValidateID(kindGroup.field, groupID); err != nil {
		return nil, "", err
	}
	prefix := groupIndexPrefix(instance, groupID)
	afterKey := ""
	if after != "" {
		afterKey = prefix + strings.ToLower(after)
	}
	keys, nextKey, err := s.st.Keys(ctx, prefix, afterKey, pageSize(limit))
	if err != nil {
		return nil, "", err
	}
	recKeys := make([]string, len(keys))
	for i, k := range keys {
		recKeys[i] = store.Key(instance, store.KindRegistration, strings.TrimPrefix(k, prefix))
	}
	vals, err := s.st.GetManyFenced(ctx, instance, recKeys) // one round trip per page
	if err != nil {
		return nil, "", err
	}
	page = make([]*model.Registration, 0, len(keys))
	for _, b := range vals {
		if b == nil {
			continue // a stale index entry
		}
		var r model.Registration
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, "", fmt.Errorf("enrollment: stored registration record: %w", err)
		}
		if strings.EqualFold(r.EnrollmentGroupID, groupID) {
			page = append(page, &r)
		}
	}
	return page, strings.TrimPrefix(nextKey, prefix), nil
}
