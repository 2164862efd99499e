package serviceapi

import (
	"errors"
	"net/http"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/store"
)

// mapErr turns an error of the enrollment logic or the store into the
// error the client sees. Unknown errors stay as they are (500, logged).
func mapErr(err error, rt route) error {
	var ie *enrollment.InvalidError
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.As(err, &ie):
		return apierr.Wrap(err, apierr.CodeBadArgument, "%s", ie.Message)
	case errors.Is(err, enrollment.ErrNotFound):
		return notFoundErr(err, rt)
	case errors.Is(err, enrollment.ErrPrecondition):
		return apierr.Wrap(err, apierr.CodePreconditionFailed, "Precondition failed: the If-Match etag does not match the current %s.", rt.what())
	case errors.Is(err, enrollment.ErrExists):
		return apierr.Wrap(err, apierr.CodeConflict, "The %s already exists.", rt.what())
	case errors.Is(err, enrollment.ErrInstanceNotFound):
		return apierr.Wrap(err, apierr.CodeInstanceNotFound, "The provisioning service does not exist.")
	case errors.Is(err, store.ErrFenced):
		return retryLater(err, "This provisioning service is not served by this region right now (failover under way); try again.")
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrUnavailable):
		return retryLater(err, "Storage is busy or unavailable; try again.")
	}
	return err
}

func notFoundErr(err error, rt route) error {
	if rt.res == resRegistration {
		return apierr.Wrap(err, apierr.CodeRegistrationMissing, "Registration %q not found.", rt.id)
	}
	return apierr.Wrap(err, apierr.CodeEnrollmentNotFound, "%s %q not found.", capitalize(rt.what()), rt.id)
}

func retryLater(err error, msg string) error {
	e := apierr.Wrap(err, apierr.CodeUnavailable, "%s", msg)
	e.Header = http.Header{"Retry-After": {"1"}}
	return e
}

// what names the record kind of a route in messages.
func (rt route) what() string {
	switch rt.res {
	case resEnrollment:
		return "enrollment"
	case resGroup:
		return "enrollment group"
	case resRegistration:
		return "registration"
	}
	return "record"
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// itemError returns the errorCode and errorStatus of a failed bulk item.
func itemError(err error, rt route) (int, string) {
	var ae *apierr.Error
	if errors.As(mapErr(err, rt), &ae) {
		return ae.Code, ae.Message
	}
	return apierr.CodeInternal, "Internal error."
}
