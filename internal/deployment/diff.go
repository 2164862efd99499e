package deployment

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opendps/opendps/internal/armtemplate"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/pkg/dpsclient"
)

// Change types of a resource (ARM what-if names).
const (
	ChangeCreate   = "Create"
	ChangeModify   = "Modify"
	ChangeNoChange = "NoChange"
)

// Outcomes of a resource in a deployment record.
const (
	OutcomeCreated   = "created"
	OutcomeModified  = "modified"
	OutcomeUnchanged = "unchanged"
	OutcomeFailed    = "failed"
	OutcomeSkipped   = "skipped"
)

// hubView is a linked hub as compared and shown: no key.
type hubView struct {
	HostName              string `json:"hostName"`
	KeyName               string `json:"keyName"`
	Location              string `json:"location"`
	AllocationWeight      int    `json:"allocationWeight"`
	ApplyAllocationPolicy bool   `json:"applyAllocationPolicy"`
}

type policyView struct {
	KeyName string `json:"keyName"`
	Rights  string `json:"rights"`
}

// instanceDelta compares the template's instance with the current one
// (nil: absent) on what the template sets. An immutable property that
// differs is an error located in the template.
func instanceDelta(r *armtemplate.Resource, cur *dpsclient.ProvisioningService) ([]dpsclient.PropertyChange, error) {
	want := r.Instance
	var d []dpsclient.PropertyChange
	add := func(path string, before, after any) {
		d = append(d, dpsclient.PropertyChange{Path: path, Before: before, After: after})
	}
	if cur == nil {
		add("location", nil, r.Location)
		if want.EnableDataResidency != nil {
			add("properties.enableDataResidency", nil, *want.EnableDataResidency)
		}
		if want.AllocationPolicy != "" {
			add("properties.allocationPolicy", nil, want.AllocationPolicy)
		}
		if r.Tags != nil {
			add("tags", nil, r.Tags)
		}
		if want.IotHubs != nil {
			add("properties.iotHubs", nil, wantHubs(r))
		}
		if want.AuthorizationPolicies != nil {
			add("properties.authorizationPolicies", nil, wantPolicies(r))
		}
		return d, nil
	}
	p := cur.Properties
	if regions.Normalize(cur.Location) != r.Location {
		return nil, refused(r.Path+".location", "location cannot change: instance %s is in %s, the template says %s", cur.Name, cur.Location, r.Location)
	}
	if dr := want.EnableDataResidency; dr != nil && *dr != p.EnableDataResidency {
		return nil, refused(r.Path+".properties.enableDataResidency", "enableDataResidency can only be set when the instance is created (instance %s has %t)", cur.Name, p.EnableDataResidency)
	}
	if want.AllocationPolicy != "" && !strings.EqualFold(want.AllocationPolicy, p.AllocationPolicy) {
		add("properties.allocationPolicy", p.AllocationPolicy, want.AllocationPolicy)
	}
	if r.Tags != nil && !maps.Equal(r.Tags, nonNil(cur.Tags)) {
		add("tags", nonNil(cur.Tags), r.Tags)
	}
	if want.IotHubs != nil {
		d = append(d, listDelta("properties.iotHubs", currentHubs(p.IotHubs, cur.Location), wantHubs(r), func(h hubView) string { return h.HostName })...)
	}
	if want.AuthorizationPolicies != nil {
		d = append(d, listDelta("properties.authorizationPolicies", currentPolicies(p.AuthorizationPolicies), wantPolicies(r), func(p policyView) string { return p.KeyName })...)
	}
	return d, nil
}

// listDelta diffs two lists of records keyed by key: an added or removed
// record is one change at path[key], a changed one a change per field at
// path[key].field (fields by their JSON names).
func listDelta[T comparable](path string, before, after []T, key func(T) string) []dpsclient.PropertyChange {
	var out []dpsclient.PropertyChange
	old := map[string]T{}
	for _, b := range before {
		old[key(b)] = b
	}
	seen := map[string]bool{}
	for _, a := range after {
		k := key(a)
		seen[k] = true
		b, ok := old[k]
		switch {
		case !ok:
			out = append(out, dpsclient.PropertyChange{Path: path + "[" + k + "]", After: a})
		case b != a:
			out = append(out, fieldDelta(path+"["+k+"]", b, a)...)
		}
	}
	for _, b := range before {
		if !seen[key(b)] {
			out = append(out, dpsclient.PropertyChange{Path: path + "[" + key(b) + "]", Before: b})
		}
	}
	return out
}

// fieldDelta lists the fields of two records (as JSON objects) that differ.
func fieldDelta(path string, before, after any) []dpsclient.PropertyChange {
	bm, am := asMap(before), asMap(after)
	var out []dpsclient.PropertyChange
	for _, k := range slices.Sorted(maps.Keys(am)) {
		if fmt.Sprint(bm[k]) != fmt.Sprint(am[k]) {
			out = append(out, dpsclient.PropertyChange{Path: path + "." + k, Before: bm[k], After: am[k]})
		}
	}
	return out
}

func asMap(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func wantHubs(r *armtemplate.Resource) []hubView {
	out := make([]hubView, 0, len(r.Instance.IotHubs))
	for _, h := range r.Instance.IotHubs {
		v := hubView{HostName: h.HostName, KeyName: h.KeyName, Location: h.Location, AllocationWeight: 1, ApplyAllocationPolicy: true}
		if v.Location == "" {
			v.Location = r.Location
		}
		if h.AllocationWeight != nil {
			v.AllocationWeight = *h.AllocationWeight
		}
		if h.ApplyAllocationPolicy != nil {
			v.ApplyAllocationPolicy = *h.ApplyAllocationPolicy
		}
		out = append(out, v)
	}
	return sortHubs(out)
}

func currentHubs(hs []dpsclient.IotHub, loc string) []hubView {
	out := make([]hubView, 0, len(hs))
	for _, h := range hs {
		v := hubView{HostName: h.Name, KeyName: connStringField(h.ConnectionString, "SharedAccessKeyName"),
			Location: regions.Normalize(h.Location), AllocationWeight: h.AllocationWeight, ApplyAllocationPolicy: true}
		if v.HostName == "" {
			v.HostName = dpsclient.ConnectionStringHost(h.ConnectionString)
		}
		if v.Location == "" {
			v.Location = regions.Normalize(loc)
		}
		if v.AllocationWeight == 0 {
			v.AllocationWeight = 1
		}
		if h.ApplyAllocationPolicy != nil {
			v.ApplyAllocationPolicy = *h.ApplyAllocationPolicy
		}
		out = append(out, v)
	}
	return sortHubs(out)
}

func sortHubs(hs []hubView) []hubView {
	for i := range hs {
		hs[i].HostName = strings.ToLower(hs[i].HostName)
	}
	slices.SortFunc(hs, func(a, b hubView) int { return strings.Compare(a.HostName, b.HostName) })
	return hs
}

func connStringField(cs, key string) string {
	for _, part := range strings.Split(cs, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func wantPolicies(r *armtemplate.Resource) []policyView {
	out := []policyView{}
	for _, p := range r.Instance.AuthorizationPolicies {
		out = append(out, policyView{KeyName: strings.ToLower(p.KeyName), Rights: normRights(p.Rights)})
	}
	slices.SortFunc(out, func(a, b policyView) int { return strings.Compare(a.KeyName, b.KeyName) })
	return out
}

func currentPolicies(ps []dpsclient.AccessPolicy) []policyView {
	out := []policyView{}
	for _, p := range ps {
		out = append(out, policyView{KeyName: strings.ToLower(p.KeyName), Rights: normRights(p.Rights)})
	}
	slices.SortFunc(out, func(a, b policyView) int { return strings.Compare(a.KeyName, b.KeyName) })
	return out
}

// normRights sorts a comma-separated rights list, case-insensitively.
func normRights(s string) string {
	var rs []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			rs = append(rs, p)
		}
	}
	slices.Sort(rs)
	return strings.Join(rs, ", ")
}

// certificateDelta compares a template certificate with the current one
// (nil: absent).
func certificateDelta(r *armtemplate.Resource, cur *dpsclient.Certificate) []dpsclient.PropertyChange {
	want := r.Certificate
	after := certView{Thumbprint: want.Thumbprint, IsVerified: want.IsVerified}
	if cur == nil {
		return []dpsclient.PropertyChange{{Path: "properties", After: after}}
	}
	before := certView{Thumbprint: cur.Properties.Thumbprint, IsVerified: cur.Properties.IsVerified}
	if before == after {
		return nil
	}
	return []dpsclient.PropertyChange{{Path: "properties", Before: before, After: after}}
}

type certView struct {
	Thumbprint string `json:"thumbprint"`
	IsVerified bool   `json:"isVerified"`
}

func refused(path, format string, args ...any) error {
	return armtemplate.Errors{{Kind: armtemplate.ErrRefused, Path: path, Msg: fmt.Sprintf(format, args...)}}
}
