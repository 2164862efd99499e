package dpsclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// Types of the service API (spec/dps-protocol.md §6.3), usable by callers
// outside this module.
type (
	IndividualEnrollment    = model.IndividualEnrollment
	EnrollmentGroup         = model.EnrollmentGroup
	EnrollmentCommon        = model.EnrollmentCommon
	AttestationMechanism    = model.AttestationMechanism
	DeviceRegistrationState = model.DeviceRegistrationState
	BulkOperationResult     = model.BulkOperationResult
)

// ServiceAPIVersion is the api-version the service client sends (the Node
// service SDK's).
const ServiceAPIVersion = "2021-10-01"

// serviceTokenTTL is the lifetime of the SAS token signed for each request.
const serviceTokenTTL = time.Hour

// Errors of the service client; a *ServiceError matches the one of its
// HTTP status with errors.Is.
var (
	ErrServiceNotFound     = errors.New("dpsclient: not found")
	ErrServiceUnauthorized = errors.New("dpsclient: unauthorized")
	ErrServicePrecondition = errors.New("dpsclient: etag does not match")
	ErrServiceConflict     = errors.New("dpsclient: already exists")
	ErrServiceBadRequest   = errors.New("dpsclient: bad request")
)

// ServiceError is an error answer of the service API.
type ServiceError struct {
	Status     int    // HTTP status
	Code       int    `json:"errorCode"`
	Message    string `json:"message"`
	TrackingID string `json:"trackingId"`
}

func (e *ServiceError) Error() string {
	return fmt.Sprintf("dpsclient: service API %d (%d): %s", e.Status, e.Code, e.Message)
}

// Is maps the HTTP status to the sentinel errors.
func (e *ServiceError) Is(target error) bool {
	switch e.Status {
	case http.StatusNotFound:
		return target == ErrServiceNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return target == ErrServiceUnauthorized
	case http.StatusPreconditionFailed:
		return target == ErrServicePrecondition
	case http.StatusConflict:
		return target == ErrServiceConflict
	case http.StatusBadRequest:
		return target == ErrServiceBadRequest
	}
	return false
}

// Service is a client of the service API of one instance, authenticated
// with a shared access policy (a token is signed per request). It is safe
// for concurrent use.
type Service struct {
	cs   *sas.ConnectionString
	base string // https://{HostName}
	hc   *http.Client
	now  func() time.Time
}

// NewService returns a client for a connection string
// "HostName=...;SharedAccessKeyName=...;SharedAccessKey=...". hc nil means
// http.DefaultClient; use HTTPClient for a local deployment.
func NewService(connectionString string, hc *http.Client) (*Service, error) {
	cs, err := sas.ParseConnectionString(connectionString)
	if err != nil {
		return nil, err
	}
	if cs.SharedAccessKeyName == "" {
		return nil, fmt.Errorf("%w: SharedAccessKeyName is required", sas.ErrConnectionString)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Service{cs: cs, base: "https://" + cs.HostName, hc: hc, now: time.Now}, nil
}

// HostName returns the service host of the connection string.
func (s *Service) HostName() string { return s.cs.HostName }

// call sends one request. in (when not nil) is sent as JSON; a 2xx answer
// is decoded into out (when not nil). It returns the response headers.
func (s *Service) call(ctx context.Context, method, path string, hdr map[string]string, in, out any) (http.Header, error) {
	req, err := newJSONRequest(ctx, method, s.base+path+"?api-version="+ServiceAPIVersion, in, "application/json; charset=utf-8")
	if err != nil {
		return nil, err
	}
	tok, err := sas.Build(s.cs.HostName, s.cs.SharedAccessKey, s.cs.SharedAccessKeyName, s.now().Add(serviceTokenTTL))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", tok)
	for k, v := range hdr {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, b, err := readAnswer(s.hc, req, 16<<20)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := parseErrorAnswer(b)
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		return resp.Header, &ServiceError{Status: resp.StatusCode, Code: e.ErrorCode, Message: e.Message, TrackingID: e.TrackingID}
	}
	if err := decodeAnswer(b, out); err != nil {
		return resp.Header, fmt.Errorf("dpsclient: %s %s answer: %w", method, path, err)
	}
	return resp.Header, nil
}

func enrollmentPath(id string) string { return "/enrollments/" + url.PathEscape(id) }
func groupPath(id string) string      { return "/enrollmentGroups/" + url.PathEscape(id) }

// CreateOrUpdateEnrollment PUTs e; when e.Etag is set it is sent as
// If-Match (as the official SDKs do). It returns the stored enrollment,
// with generated keys.
func (s *Service) CreateOrUpdateEnrollment(ctx context.Context, e *IndividualEnrollment) (*IndividualEnrollment, error) {
	var out IndividualEnrollment
	_, err := s.call(ctx, http.MethodPut, enrollmentPath(e.RegistrationID), map[string]string{"If-Match": e.Etag}, e, &out)
	return &out, err
}

// GetEnrollment returns the individual enrollment regID.
func (s *Service) GetEnrollment(ctx context.Context, regID string) (*IndividualEnrollment, error) {
	var out IndividualEnrollment
	_, err := s.call(ctx, http.MethodGet, enrollmentPath(regID), nil, nil, &out)
	return &out, err
}

// DeleteEnrollment deletes regID; a non-empty etag is sent as If-Match.
func (s *Service) DeleteEnrollment(ctx context.Context, regID, etag string) error {
	_, err := s.call(ctx, http.MethodDelete, enrollmentPath(regID), map[string]string{"If-Match": etag}, nil, nil)
	return err
}

// AttestationMechanism returns the attestation of regID, keys included.
func (s *Service) AttestationMechanism(ctx context.Context, regID string) (*AttestationMechanism, error) {
	var out AttestationMechanism
	_, err := s.call(ctx, http.MethodPost, enrollmentPath(regID)+"/attestationmechanism", nil, nil, &out)
	return &out, err
}

// BulkEnrollments runs a bulk operation (mode create, update,
// updateIfMatchETag or delete) on up to 10 enrollments. Per-item failures
// are in the result, not in the error.
func (s *Service) BulkEnrollments(ctx context.Context, mode string, items []*IndividualEnrollment) (*BulkOperationResult, error) {
	var out BulkOperationResult
	_, err := s.call(ctx, http.MethodPost, "/enrollments", nil, model.BulkEnrollmentOperation{Mode: mode, Enrollments: items}, &out)
	return &out, err
}

// QueryEnrollments returns one page of individual enrollments (pageSize 0:
// the service default) after continuation ("" for the first page); next is
// "" on the last page.
func (s *Service) QueryEnrollments(ctx context.Context, pageSize int, continuation string) (page []*IndividualEnrollment, next string, err error) {
	next, err = s.query(ctx, "/enrollments/query", pageSize, continuation, &page)
	return page, next, err
}

// CreateOrUpdateGroup PUTs g, like CreateOrUpdateEnrollment.
func (s *Service) CreateOrUpdateGroup(ctx context.Context, g *EnrollmentGroup) (*EnrollmentGroup, error) {
	var out EnrollmentGroup
	_, err := s.call(ctx, http.MethodPut, groupPath(g.EnrollmentGroupID), map[string]string{"If-Match": g.Etag}, g, &out)
	return &out, err
}

// GetGroup returns the enrollment group groupID.
func (s *Service) GetGroup(ctx context.Context, groupID string) (*EnrollmentGroup, error) {
	var out EnrollmentGroup
	_, err := s.call(ctx, http.MethodGet, groupPath(groupID), nil, nil, &out)
	return &out, err
}

// DeleteGroup deletes groupID; a non-empty etag is sent as If-Match.
func (s *Service) DeleteGroup(ctx context.Context, groupID, etag string) error {
	_, err := s.call(ctx, http.MethodDelete, groupPath(groupID), map[string]string{"If-Match": etag}, nil, nil)
	return err
}

// GroupAttestationMechanism returns the attestation of groupID, keys
// included.
func (s *Service) GroupAttestationMechanism(ctx context.Context, groupID string) (*AttestationMechanism, error) {
	var out AttestationMechanism
	_, err := s.call(ctx, http.MethodPost, groupPath(groupID)+"/attestationmechanism", nil, nil, &out)
	return &out, err
}

// BulkGroups runs a bulk operation on up to 10 enrollment groups.
func (s *Service) BulkGroups(ctx context.Context, mode string, items []*EnrollmentGroup) (*BulkOperationResult, error) {
	var out BulkOperationResult
	_, err := s.call(ctx, http.MethodPost, "/enrollmentGroups", nil, model.BulkEnrollmentGroupOperation{Mode: mode, EnrollmentGroups: items}, &out)
	return &out, err
}

// QueryGroups returns one page of enrollment groups, like QueryEnrollments.
func (s *Service) QueryGroups(ctx context.Context, pageSize int, continuation string) (page []*EnrollmentGroup, next string, err error) {
	next, err = s.query(ctx, "/enrollmentGroups/query", pageSize, continuation, &page)
	return page, next, err
}

// GetRegistration returns the registration state of regID.
func (s *Service) GetRegistration(ctx context.Context, regID string) (*DeviceRegistrationState, error) {
	var out DeviceRegistrationState
	_, err := s.call(ctx, http.MethodGet, "/registrations/"+url.PathEscape(regID), nil, nil, &out)
	return &out, err
}

// DeleteRegistration deletes the registration state of regID; a non-empty
// etag is sent as If-Match.
func (s *Service) DeleteRegistration(ctx context.Context, regID, etag string) error {
	_, err := s.call(ctx, http.MethodDelete, "/registrations/"+url.PathEscape(regID), map[string]string{"If-Match": etag}, nil, nil)
	return err
}

// QueryGroupRegistrations returns one page of the registration states of
// the devices of enrollment group groupID, like QueryEnrollments.
func (s *Service) QueryGroupRegistrations(ctx context.Context, groupID string, pageSize int, continuation string) (page []*DeviceRegistrationState, next string, err error) {
	next, err = s.query(ctx, "/registrations/"+url.PathEscape(groupID)+"/query", pageSize, continuation, &page)
	return page, next, err
}

// query runs one page of a query into out (a pointer to a slice).
func (s *Service) query(ctx context.Context, path string, pageSize int, continuation string, out any) (string, error) {
	hdr := map[string]string{"x-ms-continuation": continuation}
	if pageSize > 0 {
		hdr["x-ms-max-item-count"] = strconv.Itoa(pageSize)
	}
	h, err := s.call(ctx, http.MethodPost, path, hdr, model.QuerySpecification{Query: "*"}, out)
	if err != nil {
		return "", err
	}
	return h.Get("x-ms-continuation"), nil
}
