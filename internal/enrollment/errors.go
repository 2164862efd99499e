package enrollment

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Test with errors.Is. Errors from the
// store (store.ErrFenced, store.ErrConflict, store.ErrUnavailable) pass
// through wrapped and unchanged in kind.
var (
	// ErrInvalid marks a request that fails validation. The error is an
	// *InvalidError whose Message is safe to show to a client.
	ErrInvalid = errors.New("enrollment: invalid request")
	// ErrNotFound is returned when an enrollment, group or registration
	// does not exist.
	ErrNotFound = errors.New("enrollment: not found")
	// ErrInstanceNotFound is returned when the instance does not exist.
	ErrInstanceNotFound = errors.New("enrollment: instance not found")
	// ErrPrecondition is returned when an If-Match etag does not match the
	// stored record, or names a record that does not exist.
	ErrPrecondition = errors.New("enrollment: etag does not match")
	// ErrExists is returned by a bulk create of a record that exists.
	ErrExists = errors.New("enrollment: already exists")
)

// InvalidError is a validation failure. Message names the offending field
// and is safe to show to a client.
type InvalidError struct {
	Message string
}

func (e *InvalidError) Error() string { return "enrollment: invalid request: " + e.Message }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// invalid returns an *InvalidError with a formatted message.
func invalid(format string, args ...any) error {
	return &InvalidError{Message: fmt.Sprintf(format, args...)}
}

// notFound wraps ErrNotFound with what was missing.
func notFound(what, id string) error {
	return fmt.Errorf("%w: %s %q", ErrNotFound, what, id)
}
