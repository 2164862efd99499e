package region

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// member is a Member with the ids the status works with.
type member struct {
	Member
	id     uint64
	leader uint64 // the leader this member believes in
}

func publicMembers(ms []member) []Member {
	out := make([]Member, len(ms))
	for i := range ms {
		out[i] = ms[i].Member
	}
	return out
}

// Status gathers the status of the region: the members (the local
// member's serializable view, so it answers without a quorum too), the
// Status of every member (about a second at most for an unreachable one),
// the registry, and the zone-redundancy rule.
func (r *Region) Status(ctx context.Context) (*Status, error) {
	members, nodes, err := r.members(ctx)
	if err != nil {
		return nil, err
	}
	r.memberStatus(ctx, members)
	st := &Status{Region: r.region.Name, AvailabilityZones: r.region.AvailabilityZones, ExternalEtcd: r.st.Etcd() == nil,
		AnsweredBy: r.self.Name, Nodes: nodes, Time: time.Now().UTC()}
	leader := r.leaderOf(members)
	for i := range members {
		m := &members[i]
		m.IsLeader = leader != 0 && m.id == leader
		if m.IsLeader {
			st.Leader = m.DisplayName()
		}
		if !m.IsLearner {
			st.VotingMembers++
			if m.Healthy {
				st.HealthyVoting++
			}
		}
	}
	st.Quorum = st.VotingMembers > 0 && st.HealthyVoting >= st.VotingMembers/2+1
	st.Members = publicMembers(members)
	st.ZoneRedundant, st.Zones, st.Reason = Redundancy(r.region, st.Members)
	if st.ExternalEtcd && !st.ZoneRedundant {
		st.Reason = externalReason(st.Reason)
	}
	if st.Zones == nil {
		st.Zones = []string{}
	}
	return st, nil
}

// leaderOf is the leader the local member knows, else the one reported by
// the member with the highest term.
func (r *Region) leaderOf(members []member) uint64 {
	if e := r.st.Etcd(); e != nil {
		if l := uint64(e.Server.Leader()); l != 0 {
			return l
		}
	}
	var leader, term uint64
	for _, m := range members {
		if m.leader != 0 && m.RaftTerm >= term {
			leader, term = m.leader, m.RaftTerm
		}
	}
	return leader
}

// members lists the members with their zones (member records, else the
// registry) and registry entries, in name order.
func (r *Region) members(ctx context.Context) ([]member, []Node, error) {
	ml, err := r.cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, nil, fmt.Errorf("region: member list: %w", err)
	}
	records := map[string]MemberRecord{}
	if err := r.readPrefix(ctx, memberPrefix+r.region.Name+"/", func(b []byte) error {
		var rec MemberRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return err
		}
		records[rec.Name] = rec
		return nil
	}); err != nil {
		return nil, nil, err
	}
	nodes, err := r.nodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	byName := map[string]*Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	out := make([]member, 0, len(ml.Members))
	for _, pm := range ml.Members {
		m := member{id: pm.ID, Member: Member{ID: strconv.FormatUint(pm.ID, 16), Name: pm.Name, PeerURLs: pm.PeerURLs,
			ClientURLs: pm.ClientURLs, IsLearner: pm.IsLearner, Started: pm.Name != ""}}
		if m.PeerURLs == nil {
			m.PeerURLs = []string{}
		}
		if rec, ok := records[m.Name]; ok && m.Name != "" {
			m.Zone = rec.Zone
		} else if rec, ok := recordByID(records, m.ID); ok { // added, not started: no name yet
			m.Zone = rec.Zone
			if m.Name == "" {
				m.Name = rec.Name
			}
		}
		if n := byName[m.Name]; n != nil && m.Started {
			m.Node = n
			if m.Zone == "" {
				m.Zone = n.Zone
			}
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	return out, nodes, nil
}

func recordByID(records map[string]MemberRecord, id string) (MemberRecord, bool) {
	for _, rec := range records {
		if rec.MemberID != "" && rec.MemberID == id {
			return rec, true
		}
	}
	return MemberRecord{}, false
}

// nodes returns the live registry entries of the region, in name order.
func (r *Region) nodes(ctx context.Context) ([]Node, error) {
	out := []Node{}
	err := r.readPrefix(ctx, nodePrefix+r.region.Name+"/", func(b []byte) error {
		var n Node
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		out = append(out, n)
		return nil
	})
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// readPrefix reads every value under prefix, serializably (the local
// member answers even without a quorum; the values change rarely).
func (r *Region) readPrefix(ctx context.Context, prefix string, f func([]byte) error) error {
	resp, err := r.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return fmt.Errorf("region: read %s: %w", prefix, err)
	}
	for _, kv := range resp.Kvs {
		if err := f(kv.Value); err != nil {
			return fmt.Errorf("region: %s: %w", kv.Key, err)
		}
	}
	return nil
}

// memberStatus asks every started member for its Status, in parallel, each
// bounded by statusTimeout. The local member answers through the
// in-process client; the others through a client of their client URLs.
func (r *Region) memberStatus(ctx context.Context, members []member) {
	var local uint64
	if e := r.st.Etcd(); e != nil {
		local = uint64(e.Server.MemberID())
	}
	peers, err := r.statusClient(members, local)
	var wg sync.WaitGroup
	for i := range members {
		m := &members[i]
		switch {
		case !m.Started || len(m.ClientURLs) == 0 && m.id != local:
			m.Error = "not started: waiting for its node to join"
		case m.id == local:
			wg.Go(func() { m.ask(ctx, r.cli, "local") })
		case err != nil:
			m.Error = "unreachable: " + err.Error()
		default:
			wg.Go(func() { m.ask(ctx, peers, m.ClientURLs[0]) })
		}
	}
	wg.Wait()
}

// statusClient returns the client that reaches the members other than the
// local one: an external cluster's own client reaches every endpoint.
func (r *Region) statusClient(members []member, local uint64) (*clientv3.Client, error) {
	if local == 0 {
		return r.cli, nil
	}
	var remote []string
	for _, m := range members {
		if m.id != local && len(m.ClientURLs) > 0 {
			remote = append(remote, m.ClientURLs[0])
		}
	}
	if len(remote) == 0 {
		return nil, nil
	}
	return r.peerClient(remote)
}

// ask fills m from the Status of endpoint ep.
func (m *member) ask(ctx context.Context, cli *clientv3.Client, ep string) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := cli.Status(ctx, ep)
	if err != nil {
		m.Error = "unreachable: " + err.Error()
		return
	}
	m.Reachable = true
	m.leader = resp.Leader
	m.RaftTerm, m.RaftIndex, m.RaftAppliedIndex = resp.RaftTerm, resp.RaftIndex, resp.RaftAppliedIndex
	m.DBSize, m.EtcdVersion, m.Alarms = resp.DbSize, resp.Version, resp.Errors
	m.IsLearner = m.IsLearner || resp.IsLearner
	switch {
	case resp.Leader == 0:
		m.Error = "no leader: cut off from the quorum"
	case len(resp.Errors) > 0:
		m.Error = strings.Join(resp.Errors, "; ")
	default:
		m.Healthy = true
	}
}
