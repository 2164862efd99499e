package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Shared access policies of an instance (`opendps policy ...` and
// `opendps instance keys`): list with keys and service connection
// strings, add, change rights, remove, regenerate a key. They are the
// instance's credentials, so every page and action needs ServiceConfig
// (operators hold it).

// allRights are the rights a policy may hold, in canonical order.
var allRights = []string{model.RightServiceConfig, model.RightEnrollmentRead, model.RightEnrollmentWrite,
	model.RightRegistrationStatusRead, model.RightRegistrationStatusWrite}

// policyRow is a policy with its keys, connection strings and rights.
type policyRow struct {
	model.AccessPolicy
	PrimaryConnectionString, SecondaryConnectionString string
	Has                                                map[string]bool // right -> held
	Mine                                               bool            // the policy the session signed in with
}

type policyData struct {
	Policies []policyRow
	Rights   []string
}

// connectionString is the service connection string of a policy key, as
// `opendps instance keys` prints it.
func connectionString(host, keyName, key string) string {
	return "HostName=" + host + ";SharedAccessKeyName=" + keyName + ";SharedAccessKey=" + key
}

func (c *Console) policyList(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := c.cfg.Instances.Get(ctx, r.PathValue("name"))
	if err != nil {
		return err
	}
	d := policyData{Rights: allRights}
	for _, pol := range v.Instance.AuthorizationPolicies {
		row := policyRow{AccessPolicy: pol, Has: map[string]bool{},
			PrimaryConnectionString:   connectionString(v.ServiceHostName, pol.KeyName, pol.PrimaryKey),
			SecondaryConnectionString: connectionString(v.ServiceHostName, pol.KeyName, pol.SecondaryKey),
			Mine:                      !p.Operator && strings.EqualFold(pol.KeyName, p.Policy)}
		for _, rt := range strings.Split(pol.Rights, ",") {
			row.Has[strings.TrimSpace(rt)] = true
		}
		d.Policies = append(d.Policies, row)
	}
	c.renderInst(w, r, http.StatusOK, "policies", p, "Shared access policies", v.Instance.Name, d)
	return nil
}

// formRights is the rights checked in a policy form, comma-separated.
func formRights(r *http.Request) string {
	r.PostFormValue("rights") // parses the form
	var out []string
	for _, rt := range r.PostForm["rights"] {
		out = append(out, strings.TrimSpace(rt))
	}
	return strings.Join(out, ",")
}

// setPolicy adds a policy (action "add": fails if it exists) or changes
// the rights of one.
func (c *Console) setPolicy(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, keyName := r.PathValue("name"), strings.TrimSpace(r.PostFormValue("keyName"))
	rights := formRights(r)
	if rights == "" {
		return badRequest("Check at least one right for policy " + keyName + ".")
	}
	add := r.PostFormValue("action") == "add"
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	pol, created, err := c.cfg.Instances.SetPolicy(ctx, inst, keyName, rights, add)
	if err != nil {
		return err
	}
	msg := "Policy " + pol.KeyName + " now grants " + pol.Rights + "."
	if created {
		msg = "Policy " + pol.KeyName + " added with " + pol.Rights + "."
	}
	return c.finish(w, r, instPath(inst, "policies"), msg)
}

func (c *Console) removePolicy(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, keyName := r.PathValue("name"), r.PostFormValue("keyName")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := c.cfg.Instances.RemovePolicy(ctx, inst, keyName); err != nil {
		return err
	}
	if !p.Operator && strings.EqualFold(keyName, p.Policy) { // the session's own policy: it ended
		return c.finish(w, r, "/signin", "")
	}
	return c.finish(w, r, instPath(inst, "policies"), "Policy "+keyName+" removed.")
}

func (c *Console) regeneratePolicyKey(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := need(p, model.RightServiceConfig); err != nil {
		return err
	}
	inst, keyName, which := r.PathValue("name"), r.PostFormValue("keyName"), r.PostFormValue("key")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	pol, err := c.cfg.Instances.RegenerateKey(ctx, inst, keyName, which)
	if err != nil {
		return err
	}
	// A tenant who replaced the key they signed in with has no session any
	// more (session.go re-checks the key on every request).
	if _, err := c.principal(r); err != nil {
		c.clearCookie(w, r, cookieSession)
		return c.finish(w, r, "/signin?next="+url.QueryEscape(instPath(inst, "policies")), "")
	}
	return c.finish(w, r, instPath(inst, "policies"), "The "+strings.ToLower(which)+" key of policy "+pol.KeyName+" was regenerated.")
}
