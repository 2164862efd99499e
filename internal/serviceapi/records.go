package serviceapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
)

// Wire values of the record routes.
const (
	itemTypeEnrollment   = "Enrollment"
	itemTypeGroup        = "EnrollmentGroup"
	itemTypeRegistration = "DeviceRegistration"
)

// request is one authorised request being served.
type request struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	inst string
	rt   route
}

func (q *request) ctx() context.Context { return q.r.Context() }

// decode reads the JSON body into v (400/413/415 on bad bodies).
func (q *request) decode(v any, required bool) error {
	return apierr.DecodeJSON(q.r, q.h.max, v, required)
}

func (q *request) ifMatch() string { return q.r.Header.Get("If-Match") }

// record is a pointer to an individual enrollment or an enrollment group.
type record[T any] interface {
	*T
	model.Enrollment
}

// recordAPI serves the routes of individual enrollments or groups; the
// two differ only in these fields.
type recordAPI[T any, P record[T]] struct {
	idField  string
	itemType string
	get      func(context.Context, string, string) (P, error)
	put      func(context.Context, string, P, string) (P, error)
	del      func(context.Context, string, string, string) error
	list     func(context.Context, string, string, int) ([]P, string, error)
	bulk     func(q *request) ([]enrollment.ItemError, error)
	// attach adds read-only server data to a GET answer (may be nil).
	attach func(q *request, v P)
}

func enrollmentAPI(svc *enrollment.Service) recordAPI[model.IndividualEnrollment, *model.IndividualEnrollment] {
	return recordAPI[model.IndividualEnrollment, *model.IndividualEnrollment]{
		idField: "registrationId", itemType: itemTypeEnrollment,
		get: svc.GetEnrollment, put: svc.PutEnrollment, del: svc.DeleteEnrollment, list: svc.ListEnrollments,
		bulk: func(q *request) ([]enrollment.ItemError, error) {
			var op model.BulkEnrollmentOperation
			if err := q.decode(&op, true); err != nil {
				return nil, err
			}
			return svc.BulkEnrollments(q.ctx(), q.inst, op.Mode, op.Enrollments)
		},
		attach: func(q *request, e *model.IndividualEnrollment) {
			if reg, err := svc.GetRegistration(q.ctx(), q.inst, e.RegistrationID); err == nil {
				e.RegistrationState = &reg.DeviceRegistrationState
			}
		},
	}
}

func groupAPI(svc *enrollment.Service) recordAPI[model.EnrollmentGroup, *model.EnrollmentGroup] {
	return recordAPI[model.EnrollmentGroup, *model.EnrollmentGroup]{
		idField: "enrollmentGroupId", itemType: itemTypeGroup,
		get: svc.GetGroup, put: svc.PutGroup, del: svc.DeleteGroup, list: svc.ListGroups,
		bulk: func(q *request) ([]enrollment.ItemError, error) {
			var op model.BulkEnrollmentGroupOperation
			if err := q.decode(&op, true); err != nil {
				return nil, err
			}
			return svc.BulkGroups(q.ctx(), q.inst, op.Mode, op.EnrollmentGroups)
		},
	}
}

func (a recordAPI[T, P]) serve(q *request) error {
	var err error
	switch q.rt.op {
	case opGet:
		err = a.serveGet(q)
	case opPut:
		err = a.servePut(q)
	case opDelete:
		if err = a.del(q.ctx(), q.inst, q.rt.id, q.ifMatch()); err == nil {
			q.w.WriteHeader(http.StatusNoContent)
		}
	case opAttestation:
		var v P
		if v, err = a.get(q.ctx(), q.inst, q.rt.id); err == nil {
			err = apierr.JSON(q.w, http.StatusOK, v.Common().Attestation)
		}
	case opBulk:
		err = a.serveBulk(q)
	case opQuery:
		err = a.serveQuery(q)
	}
	return mapErr(err, q.rt)
}

func (a recordAPI[T, P]) serveGet(q *request) error {
	v, err := a.get(q.ctx(), q.inst, q.rt.id)
	if err != nil {
		return err
	}
	if a.attach != nil {
		a.attach(q, v)
	}
	return apierr.JSON(q.w, http.StatusOK, public(v))
}

func (a recordAPI[T, P]) servePut(q *request) error {
	v := P(new(T))
	if err := q.decode(v, true); err != nil {
		return err
	}
	if v.ID() == "" {
		return apierr.New(apierr.CodeBadArgument, "%s is required in the body.", a.idField)
	}
	if !strings.EqualFold(v.ID(), q.rt.id) {
		return apierr.New(apierr.CodeBadArgument, "%s %q in the body does not match %q in the path.", a.idField, truncate(v.ID()), truncate(q.rt.id))
	}
	out, err := a.put(q.ctx(), q.inst, v, q.ifMatch())
	if err != nil {
		return err
	}
	return apierr.JSON(q.w, http.StatusOK, public(out))
}

func (a recordAPI[T, P]) serveBulk(q *request) error {
	failed, err := a.bulk(q)
	if err != nil {
		return err
	}
	res := model.BulkOperationResult{IsSuccessful: len(failed) == 0, Errors: []model.BulkOperationError{}}
	for _, f := range failed {
		code, status := itemError(f.Err, route{res: q.rt.res, id: f.ID})
		e := model.BulkOperationError{ErrorCode: code, ErrorStatus: status}
		if q.rt.res == resGroup {
			e.EnrollmentGroupID = f.ID
		} else {
			e.RegistrationID = f.ID
		}
		res.Errors = append(res.Errors, e)
	}
	return apierr.JSON(q.w, http.StatusOK, res)
}

func (a recordAPI[T, P]) serveQuery(q *request) error {
	if err := q.checkQuery(true); err != nil {
		return err
	}
	pg, err := pageParams(q.r)
	if err != nil {
		return err
	}
	items, next, err := a.list(q.ctx(), q.inst, pg.after, pg.size)
	if err != nil {
		return err
	}
	out := make([]any, 0, len(items))
	for _, v := range items {
		out = append(out, public(v))
	}
	return writePage(q.w, a.itemType, pg.size, out, next)
}

// public returns what GET, PUT and queries show of a record: everything
// but certificate text (info only, as DPS shows it). Symmetric keys stay.
func public[T any, P record[T]](v P) P {
	a := v.Common().Attestation
	if a == nil || a.X509 == nil {
		return v
	}
	out := *v
	c := P(&out).Common()
	x := *a.X509
	x.ClientCertificates = infoOnly(x.ClientCertificates)
	x.SigningCertificates = infoOnly(x.SigningCertificates)
	att := *a
	att.X509 = &x
	c.Attestation = &att
	return P(&out)
}

func infoOnly(p *model.X509Certificates) *model.X509Certificates {
	if p == nil {
		return nil
	}
	out := &model.X509Certificates{}
	if p.Primary != nil {
		out.Primary = &model.X509CertificateWithInfo{Info: p.Primary.Info}
	}
	if p.Secondary != nil {
		out.Secondary = &model.X509CertificateWithInfo{Info: p.Secondary.Info}
	}
	return out
}

// registrations serves /registrations routes.
func (q *request) registrations() error {
	svc := q.h.svc
	var err error
	switch q.rt.op {
	case opGet:
		var reg *model.Registration
		if reg, err = svc.GetRegistration(q.ctx(), q.inst, q.rt.id); err == nil {
			err = apierr.JSON(q.w, http.StatusOK, reg.DeviceRegistrationState)
		}
	case opDelete:
		if err = svc.DeleteRegistration(q.ctx(), q.inst, q.rt.id, q.ifMatch()); err == nil {
			q.w.WriteHeader(http.StatusNoContent)
		}
	case opQuery:
		err = q.queryRegistrations()
	default:
		err = errors.New("serviceapi: unrouted registration operation")
	}
	return mapErr(err, q.rt)
}

func (q *request) queryRegistrations() error {
	if err := q.checkQuery(false); err != nil {
		return err
	}
	pg, err := pageParams(q.r)
	if err != nil {
		return err
	}
	regs, next, err := q.h.svc.ListGroupRegistrations(q.ctx(), q.inst, q.rt.id, pg.after, pg.size)
	if err != nil {
		return err
	}
	out := make([]model.DeviceRegistrationState, 0, len(regs))
	for _, r := range regs {
		out = append(out, r.DeviceRegistrationState)
	}
	return writePage(q.w, itemTypeRegistration, pg.size, out, next)
}
