package instance

import (
	"context"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// Which key RegenerateKey replaces.
const (
	KeyPrimary   = "primary"
	KeySecondary = "secondary"
)

func joinRights(rs []string) string { return strings.Join(rs, ", ") }

// buildPolicies validates a whole set of policies. A policy without keys
// keeps those of the old policy of the same name (case-insensitive), or
// gets new ones.
func buildPolicies(specs []PolicySpec, old []model.AccessPolicy) ([]model.AccessPolicy, error) {
	out := make([]model.AccessPolicy, 0, len(specs))
	seen := map[string]bool{}
	for _, s := range specs {
		p, err := buildPolicy(s, findPolicy(old, s.KeyName))
		if err != nil {
			return nil, err
		}
		if seen[strings.ToLower(p.KeyName)] {
			return nil, errorf(ErrInvalid, "policy %s is listed twice", p.KeyName)
		}
		seen[strings.ToLower(p.KeyName)] = true
		out = append(out, p)
	}
	return out, nil
}

func buildPolicy(s PolicySpec, old *model.AccessPolicy) (model.AccessPolicy, error) {
	if err := validateKeyName(s.KeyName); err != nil {
		return model.AccessPolicy{}, err
	}
	rights, err := ParseRights(s.Rights)
	if err != nil {
		return model.AccessPolicy{}, errorf(ErrInvalid, "policy %s: %s", s.KeyName, Message(err))
	}
	p := model.AccessPolicy{KeyName: s.KeyName, Rights: rights, PrimaryKey: s.PrimaryKey, SecondaryKey: s.SecondaryKey}
	if old != nil {
		p.KeyName = old.KeyName // keep the stored spelling
	}
	if p.PrimaryKey, err = pickKey(s.KeyName, KeyPrimary, s.PrimaryKey, old); err != nil {
		return p, err
	}
	if p.SecondaryKey, err = pickKey(s.KeyName, KeySecondary, s.SecondaryKey, old); err != nil {
		return p, err
	}
	return p, nil
}

func pickKey(policy, which, given string, old *model.AccessPolicy) (string, error) {
	if given != "" {
		return given, validateKey(policy, which, given)
	}
	if old != nil {
		if which == KeyPrimary {
			return old.PrimaryKey, nil
		}
		return old.SecondaryKey, nil
	}
	return NewKey(), nil
}

func findPolicy(ps []model.AccessPolicy, name string) *model.AccessPolicy {
	for i := range ps {
		if strings.EqualFold(ps[i].KeyName, name) {
			return &ps[i]
		}
	}
	return nil
}

// ListKeys returns the policies of an instance with their keys.
func (m *Manager) ListKeys(ctx context.Context, name string) ([]model.AccessPolicy, error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	return in.AuthorizationPolicies, nil
}

// Keys returns one policy of an instance with its keys.
func (m *Manager) Keys(ctx context.Context, name, keyName string) (model.AccessPolicy, error) {
	in, err := m.Lookup(ctx, name)
	if err != nil {
		return model.AccessPolicy{}, err
	}
	p := findPolicy(in.AuthorizationPolicies, keyName)
	if p == nil {
		return model.AccessPolicy{}, errorf(ErrNotFound, "policy %q of instance %s not found", clip(keyName), in.Name)
	}
	return *p, nil
}

// SetPolicy adds policy keyName with rights (comma-separated,
// case-insensitive) and new keys, or changes the rights of an existing one
// (keys kept). With createOnly an existing policy gives ErrPrecondition.
// created says whether the policy is new.
func (m *Manager) SetPolicy(ctx context.Context, name, keyName, rights string, createOnly bool) (p model.AccessPolicy, created bool, err error) {
	if err := validateKeyName(keyName); err != nil {
		return p, false, err
	}
	canon, err := ParseRights(rights)
	if err != nil {
		return p, false, err
	}
	_, err = m.mutate(ctx, name, func(_ *store.Tx, in *model.Instance) (bool, error) {
		cur := findPolicy(in.AuthorizationPolicies, keyName)
		created = cur == nil
		if cur == nil {
			p = model.AccessPolicy{KeyName: keyName, PrimaryKey: NewKey(), SecondaryKey: NewKey(), Rights: canon}
			in.AuthorizationPolicies = append(in.AuthorizationPolicies, p)
			return true, nil
		}
		if createOnly {
			return false, errorf(ErrPrecondition, "policy %s already exists", cur.KeyName)
		}
		changed := cur.Rights != canon
		cur.Rights = canon
		p = *cur
		return changed, nil
	})
	return p, created, err
}

// RemovePolicy deletes policy keyName. The last policy of an instance
// cannot be removed (ErrInvalid): the service API would then accept no
// credential at all. Add another policy first.
func (m *Manager) RemovePolicy(ctx context.Context, name, keyName string) error {
	_, err := m.mutate(ctx, name, func(_ *store.Tx, in *model.Instance) (bool, error) {
		i := policyIndex(in.AuthorizationPolicies, keyName)
		if i < 0 {
			return false, errorf(ErrNotFound, "policy %q of instance %s not found", clip(keyName), in.Name)
		}
		if len(in.AuthorizationPolicies) == 1 {
			return false, errorf(ErrInvalid, "policy %s is the last policy of instance %s; add another policy before removing it", in.AuthorizationPolicies[i].KeyName, in.Name)
		}
		in.AuthorizationPolicies = append(in.AuthorizationPolicies[:i:i], in.AuthorizationPolicies[i+1:]...)
		return true, nil
	})
	return err
}

func policyIndex(ps []model.AccessPolicy, name string) int {
	for i := range ps {
		if strings.EqualFold(ps[i].KeyName, name) {
			return i
		}
	}
	return -1
}

// RegenerateKey replaces the primary or secondary key (which: "primary" or
// "secondary", case-insensitive; "PrimaryKey"/"SecondaryKey" too) of policy
// keyName with a new random one, and returns the policy.
func (m *Manager) RegenerateKey(ctx context.Context, name, keyName, which string) (model.AccessPolicy, error) {
	w := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(which)), "key")
	if w != KeyPrimary && w != KeySecondary {
		return model.AccessPolicy{}, errorf(ErrInvalid, "key must be %q or %q, not %q", KeyPrimary, KeySecondary, clip(which))
	}
	var p model.AccessPolicy
	_, err := m.mutate(ctx, name, func(_ *store.Tx, in *model.Instance) (bool, error) {
		cur := findPolicy(in.AuthorizationPolicies, keyName)
		if cur == nil {
			return false, errorf(ErrNotFound, "policy %q of instance %s not found", clip(keyName), in.Name)
		}
		if w == KeyPrimary {
			cur.PrimaryKey = NewKey()
		} else {
			cur.SecondaryKey = NewKey()
		}
		p = *cur
		return true, nil
	})
	if err == nil {
		m.log.Info("policy key regenerated", "instance", CanonicalName(name), "policy", p.KeyName, "key", w)
	}
	return p, err
}
