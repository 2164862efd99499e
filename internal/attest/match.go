package attest

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// Enrollments is the read access attestation needs to one instance's
// enrollments. Implementations must be safe for concurrent use; the
// Attestor never modifies what they return, so they may return shared,
// cached records.
type Enrollments interface {
	// Individual returns the individual enrollment of registrationID
	// (case-insensitive), or nil and no error when there is none. An error
	// means the source failed; the Attestor returns it wrapped, never as a
	// refusal.
	Individual(ctx context.Context, registrationID string) (*model.IndividualEnrollment, error)
	// Groups returns every enrollment group of the instance, in a stable
	// order (by id): when two groups accept the same device at the same
	// specificity, the first one wins.
	Groups(ctx context.Context) ([]*model.EnrollmentGroup, error)
	// CACertificate returns the instance's CA certificate called name
	// (§8.4) and whether its proof of possession is complete. A nil
	// certificate and no error mean there is no such certificate.
	CACertificate(ctx context.Context, name string) (cert *x509.Certificate, verified bool, err error)
}

// Slot says which of an enrollment's two credentials matched.
type Slot int

// Credential slots. SlotNone is the zero value: no credential matched.
const (
	SlotNone Slot = iota
	Primary
	Secondary
)

// String returns "primary", "secondary" or "none".
func (s Slot) String() string {
	switch s {
	case Primary:
		return "primary"
	case Secondary:
		return "secondary"
	}
	return "none"
}

// Match is the outcome of a successful attestation: the device proved it
// holds a credential of the enrollment named here. Disabled matches are
// matches too (the device authenticated); the engine answers them with
// status "disabled" (§2.4). A Match is a value the caller owns; the
// enrollment pointers are the ones Enrollments returned (do not modify).
type Match struct {
	// RegistrationID is the registration id of the request.
	RegistrationID string
	// AttestationType is model.AttestationSymmetricKey or
	// model.AttestationX509.
	AttestationType string
	// Individual is set when the individual enrollment of the registration
	// id decided. It is also set, together with Group, when a group
	// authenticated the device but the device's disabled individual
	// enrollment keeps it out (Disabled is then true).
	Individual *model.IndividualEnrollment
	// Group is set when an enrollment group authenticated the device.
	Group *model.EnrollmentGroup
	// KeyUsed says which key (symmetric key) or certificate (client
	// certificate, signing certificate or CA reference) matched.
	KeyUsed Slot
	// Disabled is true when the deciding enrollment, the group, or the
	// device's individual enrollment is disabled.
	Disabled bool

	// Certificate is the device's leaf certificate (X.509 only).
	Certificate *x509.Certificate
	// SigningCertificate is the group anchor the chain led to (X.509
	// groups only): a signing certificate or a verified CA certificate.
	SigningCertificate *x509.Certificate
	// CAName is the CA reference the chain led to, "" for signing
	// certificates (X.509 groups only).
	CAName string
	// Chain is the verified chain, leaf first, anchor last (X.509 groups).
	Chain []*x509.Certificate
}

// Enrollment returns the enrollment whose configuration applies: the
// individual enrollment when set, else the group.
func (m *Match) Enrollment() model.Enrollment {
	if m.Individual != nil {
		return m.Individual
	}
	return m.Group
}

// EnrollmentGroupID returns the group id, or "" when no group matched.
func (m *Match) EnrollmentGroupID() string {
	if m.Group == nil {
		return ""
	}
	return m.Group.EnrollmentGroupID
}

// Err returns nil for an enabled match and an error wrapping ErrDisabled
// (naming the disabled enrollment) otherwise.
func (m *Match) Err() error {
	if !m.Disabled {
		return nil
	}
	switch {
	case m.Individual != nil && isDisabled(&m.Individual.EnrollmentCommon):
		return fmt.Errorf("%w: individual enrollment %q", ErrDisabled, m.Individual.RegistrationID)
	case m.Group != nil:
		return fmt.Errorf("%w: enrollment group %q", ErrDisabled, m.Group.EnrollmentGroupID)
	}
	return ErrDisabled
}

// Attestor authenticates devices against enrollments. The zero value is
// ready to use (5 minutes of clock skew, no key cache). An Attestor is
// safe for concurrent use; do not change its fields while it is in use.
type Attestor struct {
	// Skew is the clock skew allowed on token expiry. Zero means
	// sas.DefaultSkew (5 minutes); negative means none.
	Skew time.Duration
	// Cache, when not nil, keeps keys derived from group keys (see
	// KeyCache). Optional: results are the same without it.
	Cache *KeyCache
}

func (a *Attestor) skew() time.Duration {
	switch {
	case a.Skew == 0:
		return sas.DefaultSkew
	case a.Skew < 0:
		return 0
	}
	return a.Skew
}

func isDisabled(c *model.EnrollmentCommon) bool {
	return strings.EqualFold(c.ProvisioningStatus, model.StatusDisabled)
}

func attestationType(c *model.EnrollmentCommon) string {
	if c.Attestation == nil {
		return ""
	}
	return c.Attestation.Type
}

// groupMatcher tries the enrollment groups; it returns a refusal (*Error)
// when none accepts the credential, or a source failure.
type groupMatcher func() (*Match, error)

// individualFirst applies the matching order of DPS: when an individual
// enrollment exists for the registration id it decides, and the groups are
// never consulted to let the device in. The one exception keeps a device
// out: when the individual enrollment is disabled and refuses the
// credential, but a group accepts it, the result is that group's match,
// marked disabled (DPS's documented way to block one device of a group is
// a disabled individual enrollment).
func individualFirst(ind *model.IndividualEnrollment, m *Match, refusal error, groups groupMatcher) (*Match, error) {
	if refusal == nil {
		return m, nil
	}
	if !isDisabled(&ind.EnrollmentCommon) {
		return nil, refusal
	}
	gm, err := groups()
	if err != nil {
		if isRefusal(err) {
			return nil, refusal
		}
		return nil, err
	}
	gm.Individual, gm.Disabled = ind, true
	return gm, nil
}
