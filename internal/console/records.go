package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/sas"
)

// Enrollments, enrollment groups and registration records of an
// instance, with the rights of the service API (spec §6.2).

// pageSize is the number of records per page of the lists.
const pageSize = 20

type recordList struct {
	Enrollments []*model.IndividualEnrollment
	Groups      []*model.EnrollmentGroup
	After, Next string // paging: this page starts after After; Next is the next page's start
	CanWrite    bool
}

func need(p *principal, right string) error {
	if !p.Can(right) {
		return forbidden("Policy " + p.Policy + " does not grant " + right + ", which this page or action needs.")
	}
	return nil
}

func listLimit(r *http.Request) int {
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n > 0 && n <= enrollment.MaxPageSize {
		return n
	}
	return pageSize
}

func (c *Console) enrollmentList(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.listRecords(w, r, p, "enrollments", "Enrollments", func(ctx context.Context, inst, after string, n int) (d recordList, err error) {
		d.Enrollments, d.Next, err = c.cfg.Enrollments.ListEnrollments(ctx, inst, after, n)
		return d, err
	})
}

func (c *Console) groupList(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.listRecords(w, r, p, "groups", "Enrollment groups", func(ctx context.Context, inst, after string, n int) (d recordList, err error) {
		d.Groups, d.Next, err = c.cfg.Enrollments.ListGroups(ctx, inst, after, n)
		return d, err
	})
}

// listRecords renders page (enrollments or groups) with the page of
// records list reads after ?after=; it needs EnrollmentRead.
func (c *Console) listRecords(w http.ResponseWriter, r *http.Request, p *principal, page, title string,
	list func(ctx context.Context, inst, after string, n int) (recordList, error)) error {
	if err := need(p, model.RightEnrollmentRead); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	inst, after := r.PathValue("name"), r.URL.Query().Get("after")
	d, err := list(ctx, inst, after, listLimit(r))
	if err != nil {
		return err
	}
	d.After, d.CanWrite = after, p.Can(model.RightEnrollmentWrite)
	c.renderInst(w, r, http.StatusOK, page, p, title, inst, d)
	return nil
}

// symKey is a symmetric-key attestation with the form's keys: the
// service generates those left empty and validates the others.
func symKey(r *http.Request) (*model.AttestationMechanism, error) {
	return &model.AttestationMechanism{Type: model.AttestationSymmetricKey, SymmetricKey: &model.SymmetricKeyAttestation{
		PrimaryKey:   strings.TrimSpace(r.PostFormValue("primaryKey")),
		SecondaryKey: strings.TrimSpace(r.PostFormValue("secondaryKey"))}}, nil
}

// recordForm reads a create form of an enrollment or a group: the
// record's id (field idField) and its settings, with the attestation
// attest reads.
func recordForm(r *http.Request, idField string, attest func(*http.Request) (*model.AttestationMechanism, error)) (string, model.EnrollmentCommon, error) {
	att, err := attest(r)
	if err != nil {
		return "", model.EnrollmentCommon{}, err
	}
	common, err := formCommon(r, att)
	return strings.TrimSpace(r.PostFormValue(idField)), common, err
}

func (c *Console) createEnrollment(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "enrollments", func(ctx context.Context, inst, _ string) (string, error) {
		id, common, err := recordForm(r, "registrationId", individualAttestation)
		if err != nil {
			return "", err
		}
		e := &model.IndividualEnrollment{RegistrationID: id, DeviceID: strings.TrimSpace(r.PostFormValue("deviceId")),
			EnrollmentCommon: common}
		_, err = c.cfg.Enrollments.CreateEnrollment(ctx, inst, e)
		return "Enrollment " + id + " created.", err
	})
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "groups", func(ctx context.Context, inst, _ string) (string, error) {
		id, common, err := recordForm(r, "enrollmentGroupId", groupAttestation)
		if err != nil {
			return "", err
		}
		g := &model.EnrollmentGroup{EnrollmentGroupID: id, EnrollmentCommon: common}
		_, err = c.cfg.Enrollments.CreateGroup(ctx, inst, g)
		return "Enrollment group " + id + " created.", err
	})
}

// wantStatus is the provisioning status a disable/enable form asks for.
func wantStatus(r *http.Request) string {
	if r.PostFormValue("status") == model.StatusEnabled {
		return model.StatusEnabled
	}
	return model.StatusDisabled
}

func (c *Console) disableEnrollment(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "enrollments", func(ctx context.Context, inst, id string) (string, error) {
		e, err := c.cfg.Enrollments.GetEnrollment(ctx, inst, id)
		if err != nil {
			return "", err
		}
		e.ProvisioningStatus = wantStatus(r)
		_, err = c.cfg.Enrollments.PutEnrollment(ctx, inst, e, e.Etag)
		return "Enrollment " + id + " is " + e.ProvisioningStatus + ".", err
	})
}

func (c *Console) disableGroup(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "groups", func(ctx context.Context, inst, id string) (string, error) {
		g, err := c.cfg.Enrollments.GetGroup(ctx, inst, id)
		if err != nil {
			return "", err
		}
		g.ProvisioningStatus = wantStatus(r)
		_, err = c.cfg.Enrollments.PutGroup(ctx, inst, g, g.Etag)
		return "Enrollment group " + id + " is " + g.ProvisioningStatus + ".", err
	})
}

func (c *Console) deleteEnrollment(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "enrollments", func(ctx context.Context, inst, id string) (string, error) {
		return "Enrollment " + id + " deleted.", c.cfg.Enrollments.DeleteEnrollment(ctx, inst, id, "")
	})
}

func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightEnrollmentWrite, "groups", func(ctx context.Context, inst, id string) (string, error) {
		return "Enrollment group " + id + " deleted.", c.cfg.Enrollments.DeleteGroup(ctx, inst, id, "")
	})
}

// recordAction runs a POST action on the records of an instance (id is
// the form's "id", the record a button acts on): it needs right, and on
// success returns to the instance's page sub with the message do returns.
func (c *Console) recordAction(w http.ResponseWriter, r *http.Request, p *principal, right, sub string,
	do func(ctx context.Context, inst, id string) (msg string, err error)) error {
	if err := need(p, right); err != nil {
		return err
	}
	inst, id := r.PathValue("name"), r.PostFormValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	msg, err := do(ctx, inst, id)
	if err != nil {
		return err
	}
	return c.finish(w, r, instPath(inst, sub), msg)
}

type registrationData struct {
	ID       string // searched for
	Reg      *model.Registration
	NotFound bool
	CanWrite bool
}

// registrations searches a registration record by id and shows it.
func (c *Console) registrations(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightRegistrationStatusRead); err != nil {
		return err
	}
	inst := r.PathValue("name")
	d := registrationData{ID: strings.TrimSpace(r.URL.Query().Get("id")), CanWrite: p.Can(model.RightRegistrationStatusWrite)}
	if d.ID != "" {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		reg, err := c.cfg.Enrollments.GetRegistration(ctx, inst, d.ID)
		switch {
		case errors.Is(err, enrollment.ErrNotFound) || errors.Is(err, enrollment.ErrInvalid):
			d.NotFound = true
		case err != nil:
			return err
		default:
			d.Reg = reg
		}
	}
	c.renderInst(w, r, http.StatusOK, "registrations", p, "Registration records", inst, d)
	return nil
}

func (c *Console) deleteRegistration(w http.ResponseWriter, r *http.Request, p *principal) error {
	return c.recordAction(w, r, p, model.RightRegistrationStatusWrite, "registrations", func(ctx context.Context, inst, id string) (string, error) {
		return "Registration record " + id + " deleted.", c.cfg.Enrollments.DeleteRegistration(ctx, inst, id, "")
	})
}

// instPath is /instances/{inst}/{sub}.
func instPath(inst, sub string) string {
	return "/instances/" + url.PathEscape(inst) + "/" + sub
}

// recordData is one enrollment or group with, for a group, a page of the
// registration records of its devices (`opendps enrollment show`, `group
// show`, `registration list --group`).
type recordData struct {
	Enrollment *model.IndividualEnrollment
	Group      *model.EnrollmentGroup
	Common     *model.EnrollmentCommon
	Twin       string // the initial twin as JSON
	Regs       []*model.Registration
	RegsErr    string
	After      string
	Next       string
	CanWrite   bool
	CanRegs    bool // RegistrationStatusRead: the group's records are listed
	// DeriveFor and DerivedKey: a device's key derived from a
	// symmetric-key group's primary key (`opendps enrollment compute-key`).
	DeriveFor, DerivedKey, DeriveErr string
}

func twinJSON(t *model.InitialTwin) string {
	if t == nil {
		return ""
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return ""
	}
	return string(b)
}

func (c *Console) enrollmentPage(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightEnrollmentRead); err != nil {
		return err
	}
	inst := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	e, err := c.cfg.Enrollments.GetEnrollment(ctx, inst, r.PathValue("id"))
	if err != nil {
		return err
	}
	d := recordData{Enrollment: e, Common: &e.EnrollmentCommon, Twin: twinJSON(e.InitialTwin), CanWrite: p.Can(model.RightEnrollmentWrite)}
	c.renderInst(w, r, http.StatusOK, "record", p, "Enrollment "+e.RegistrationID, inst, d)
	return nil
}

func (c *Console) groupPage(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightEnrollmentRead); err != nil {
		return err
	}
	inst := r.PathValue("name")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	g, err := c.cfg.Enrollments.GetGroup(ctx, inst, r.PathValue("id"))
	if err != nil {
		return err
	}
	d := recordData{Group: g, Common: &g.EnrollmentCommon, Twin: twinJSON(g.InitialTwin), CanWrite: p.Can(model.RightEnrollmentWrite),
		CanRegs: p.Can(model.RightRegistrationStatusRead), After: r.URL.Query().Get("after")}
	if id := strings.TrimSpace(r.URL.Query().Get("deriveFor")); id != "" && g.Attestation != nil && g.Attestation.SymmetricKey != nil {
		d.DeriveFor = id
		if err := enrollment.ValidateID("registrationId", id); err != nil {
			if _, d.DeriveErr = userError(err); d.DeriveErr == "" {
				d.DeriveErr = "That is not a valid registration ID."
			}
		} else if d.DerivedKey, err = sas.DeriveKey(g.Attestation.SymmetricKey.PrimaryKey, id); err != nil {
			d.DeriveErr = "The group's key is not base64: no key can be derived from it."
		}
	}
	if d.CanRegs {
		d.Regs, d.Next, err = c.cfg.Enrollments.ListGroupRegistrations(ctx, inst, g.EnrollmentGroupID, d.After, listLimit(r))
		if err != nil {
			c.log.Warn("console: group registrations", "instance", inst, "err", err)
			if _, d.RegsErr = userError(err); d.RegsErr == "" {
				d.RegsErr = "The registration records are unavailable right now."
			}
		}
	}
	c.renderInst(w, r, http.StatusOK, "record", p, "Enrollment group "+g.EnrollmentGroupID, inst, d)
	return nil
}
