package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Add adds a member (etcd MemberAdd) and records its zone. etcd refuses
// the change when the cluster is not healthy enough to absorb a member
// that has not started yet (strict reconfiguration check).
func (r *Region) Add(ctx context.Context, req AddRequest) (*AddResult, error) {
	if r.st.Etcd() == nil {
		return nil, fmt.Errorf("%w: add members with etcdctl", ErrExternal)
	}
	if !nameRE.MatchString(req.Name) {
		return nil, fmt.Errorf("%w: member name %q: letters, digits, '.', '_' and '-', at most 63", ErrInvalid, req.Name)
	}
	peerAddr, err := checkPeerURL(req.PeerURL)
	if err != nil {
		return nil, err
	}
	members, _, err := r.members(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if m.Name == req.Name {
			return nil, fmt.Errorf("%w: %s is already a member (id %s)", ErrExists, req.Name, m.ID)
		}
	}
	var resp *clientv3.MemberAddResponse
	if req.Learner {
		resp, err = r.cli.MemberAddAsLearner(ctx, []string{req.PeerURL})
	} else {
		resp, err = r.cli.MemberAdd(ctx, []string{req.PeerURL})
	}
	if err != nil {
		return nil, memberErr("add", err)
	}
	id := strconv.FormatUint(resp.Member.ID, 16)
	rec, _ := json.Marshal(MemberRecord{Name: req.Name, Zone: req.Zone, MemberID: id})
	if _, err := r.cli.Put(ctx, MemberKey(r.region.Name, req.Name), string(rec)); err != nil {
		r.log.Warn("member added, but its zone was not recorded", "member", req.Name, "err", err)
	}
	var parts []string
	for _, m := range resp.Members {
		name := m.Name
		if m.ID == resp.Member.ID {
			name = req.Name
		}
		if name == "" { // another member added earlier and not started yet
			return nil, fmt.Errorf("%w: member %x was added but has not started: start or remove it first", ErrRefused, m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	slices.Sort(parts)
	res := &AddResult{InitialCluster: strings.Join(parts, ","),
		Member: Member{ID: id, Name: req.Name, Zone: req.Zone, PeerURLs: resp.Member.PeerURLs, IsLearner: req.Learner}}
	res.Flags = []string{"--name", req.Name, "--region", r.region.Name}
	if req.Zone != "" {
		res.Flags = append(res.Flags, "--zone", req.Zone)
	}
	res.Flags = append(res.Flags, "--etcd-peer-addr", peerAddr, "--etcd-initial-cluster", res.InitialCluster, "--join")
	return res, nil
}

// RemoveRequest removes a member.
type RemoveRequest struct {
	// Name (or hex id) of the member. Required.
	Name string `json:"name"`
	// Force skips the checks that keep the region working (last member,
	// quorum, the answering node). etcd's own check still applies.
	Force bool `json:"force,omitempty"`
}

// Remove removes the member name (or hex id) with its records (etcd
// MemberRemove). Unless forced it refuses to remove the last member, a
// member whose removal would leave fewer healthy voting members than the
// new quorum, and the member of the node answering (ask another node).
// etcd's own check (strict reconfiguration) applies even when forced.
func (r *Region) Remove(ctx context.Context, name string, force bool) (*Member, error) {
	if r.st.Etcd() == nil {
		return nil, fmt.Errorf("%w: remove members with etcdctl", ErrExternal)
	}
	st, err := r.Status(ctx)
	if err != nil {
		return nil, err
	}
	target := findMember(st.Members, name)
	if target == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if !force {
		if err := checkRemove(st, target, r.self.MemberID); err != nil {
			return nil, err
		}
	}
	id, err := strconv.ParseUint(target.ID, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("region: member id %q: %w", target.ID, err)
	}
	if _, err := r.cli.MemberRemove(ctx, id); err != nil {
		return nil, memberErr("remove", err)
	}
	if target.Name != "" {
		r.cli.Delete(ctx, MemberKey(r.region.Name, target.Name))
		r.cli.Delete(ctx, NodeKey(r.region.Name, target.Name))
	}
	return target, nil
}

// checkRemove refuses removals that break the region.
func checkRemove(st *Status, target *Member, self string) error {
	if len(st.Members) <= 1 {
		return fmt.Errorf("%w: %s is the last member of the region", ErrRefused, target.DisplayName())
	}
	if target.ID == self {
		return fmt.Errorf("%w: %s is the member of the node answering this request; ask another node", ErrRefused, target.DisplayName())
	}
	voting, healthy := st.VotingMembers, st.HealthyVoting
	if !target.IsLearner {
		voting--
		if target.Healthy {
			healthy--
		}
	}
	if quorum := voting/2 + 1; healthy < quorum {
		return fmt.Errorf("%w: removing %s would leave %d healthy of %d voting members, below the quorum of %d",
			ErrRefused, target.DisplayName(), healthy, voting, quorum)
	}
	return nil
}

// Promote makes a learner a voting member (etcd refuses until it caught
// up with the leader).
func (r *Region) Promote(ctx context.Context, name string) (*Member, error) {
	if r.st.Etcd() == nil {
		return nil, fmt.Errorf("%w: promote members with etcdctl", ErrExternal)
	}
	members, _, err := r.members(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(members, func(m member) bool { return m.Name == name || strings.EqualFold(m.ID, name) })
	if i < 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	m := members[i]
	if _, err := r.cli.MemberPromote(ctx, m.id); err != nil {
		return nil, memberErr("promote", err)
	}
	m.IsLearner = false
	return &m.Member, nil
}

func findMember(members []Member, name string) *Member {
	for i := range members {
		if members[i].Name == name || strings.EqualFold(members[i].ID, name) {
			return &members[i]
		}
	}
	return nil
}

func checkPeerURL(s string) (hostPort string, err error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%w: peer URL %q: want http://host:port", ErrInvalid, s)
	}
	if _, p, err := net.SplitHostPort(u.Host); err != nil || p == "" || p == "0" {
		return "", fmt.Errorf("%w: peer URL %q needs a port", ErrInvalid, s)
	}
	return u.Host, nil
}

// memberErr classifies etcd's refusals of membership changes.
func memberErr(op string, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrMemberExist), errors.Is(err, rpctypes.ErrPeerURLExist):
		return fmt.Errorf("%w: %v", ErrExists, err)
	case errors.Is(err, rpctypes.ErrMemberNotFound):
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case errors.Is(err, rpctypes.ErrUnhealthy):
		return fmt.Errorf("%w: etcd: %v (a voting member can be added or removed only while the others have all been connected for 5 s; retry)", ErrRefused, err)
	case errors.Is(err, rpctypes.ErrMemberNotEnoughStarted),
		errors.Is(err, rpctypes.ErrMemberLearnerNotReady), errors.Is(err, rpctypes.ErrMemberNotLearner),
		errors.Is(err, rpctypes.ErrTooManyLearners):
		return fmt.Errorf("%w: etcd: %v", ErrRefused, err)
	}
	return fmt.Errorf("region: member %s: %w", op, err)
}
