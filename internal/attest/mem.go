package attest

import (
	"context"
	"crypto/x509"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// MemEnrollments is an in-memory Enrollments for tests and embedders.
// Fill it before use; it is safe for concurrent use as long as nobody
// modifies it.
type MemEnrollments struct {
	// Individuals by registration id; lookups are case-insensitive.
	Individuals []*model.IndividualEnrollment
	// GroupList is returned by Groups as is.
	GroupList []*model.EnrollmentGroup
	// CAs by name.
	CAs map[string]MemCA
	// Err, when set, is returned by every method (a failing store).
	Err error
}

// MemCA is a CA certificate of MemEnrollments.
type MemCA struct {
	Cert     *x509.Certificate
	Verified bool
}

var _ Enrollments = (*MemEnrollments)(nil)

// Individual implements Enrollments.
func (m *MemEnrollments) Individual(_ context.Context, regID string) (*model.IndividualEnrollment, error) {
	if m.Err != nil {
		return nil, m.Err
	}
	for _, e := range m.Individuals {
		if strings.EqualFold(e.RegistrationID, regID) {
			return e, nil
		}
	}
	return nil, nil
}

// Groups implements Enrollments.
func (m *MemEnrollments) Groups(context.Context) ([]*model.EnrollmentGroup, error) {
	return m.GroupList, m.Err
}

// CACertificate implements Enrollments.
func (m *MemEnrollments) CACertificate(_ context.Context, name string) (*x509.Certificate, bool, error) {
	if m.Err != nil {
		return nil, false, m.Err
	}
	ca, ok := m.CAs[name]
	if !ok {
		return nil, false, nil
	}
	return ca.Cert, ca.Verified, nil
}
