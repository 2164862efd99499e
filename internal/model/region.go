package model

import "time"

// Region records and the shapes of the region API (internal/region,
// internal/regionapi, docs/zones.md). They live here, free of etcd, so that
// clients (pkg/dpsclient) can use them.

// NodeEndpoints are where a node serves: host:port for the device and
// MQTT endpoints, URLs for the others.
type NodeEndpoints struct {
	Device     string `json:"device,omitempty"`
	MQTT       string `json:"mqtt,omitempty"`
	Service    string `json:"service,omitempty"`
	Control    string `json:"control,omitempty"`
	Console    string `json:"console,omitempty"`
	EtcdClient string `json:"etcdClient,omitempty"`
	EtcdPeer   string `json:"etcdPeer,omitempty"`
}

// RegionNode is a node's registry entry (/opendps/node/{region}/{name},
// bound to the node's lease).
type RegionNode struct {
	Name      string        `json:"name"`
	Region    string        `json:"region"`
	Zone      string        `json:"zone"`
	Endpoints NodeEndpoints `json:"endpoints"`
	// MemberID is the node's etcd member id (hex); empty with an external
	// cluster.
	MemberID string    `json:"memberId,omitempty"`
	Version  string    `json:"version,omitempty"`
	Started  time.Time `json:"started"`
}

// MemberRecord is what a region remembers of a member
// (/opendps/member/{region}/{name}): its zone, known even while the node
// is down or before it joined.
type MemberRecord struct {
	Name     string `json:"name"`
	Zone     string `json:"zone"`
	MemberID string `json:"memberId,omitempty"`
}

// RegionMember is one etcd member of a region.
type RegionMember struct {
	ID         string   `json:"id"` // hex, as etcdctl shows it
	Name       string   `json:"name"`
	Zone       string   `json:"zone,omitempty"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner"`
	// Started is false for a member added at run time whose node has not
	// joined yet.
	Started bool `json:"started"`
	// The fields below come from the member's own Status. Healthy: it
	// answered, knows a leader, and reports no alarm.
	Reachable        bool     `json:"reachable"`
	Healthy          bool     `json:"healthy"`
	IsLeader         bool     `json:"isLeader"`
	Error            string   `json:"error,omitempty"`
	RaftTerm         uint64   `json:"raftTerm,omitempty"`
	RaftIndex        uint64   `json:"raftIndex,omitempty"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex,omitempty"`
	DBSize           int64    `json:"dbSize,omitempty"`
	EtcdVersion      string   `json:"etcdVersion,omitempty"`
	Alarms           []string `json:"alarms,omitempty"`
	// Node is the member's registry entry: present while its node lives.
	Node *RegionNode `json:"node,omitempty"`
}

// DisplayName is the member's name, or its id before it has one.
func (m *RegionMember) DisplayName() string {
	if m.Name != "" {
		return m.Name
	}
	return m.ID
}

// RegionStatus is the state of a region as one node sees it.
type RegionStatus struct {
	Region string `json:"region"`
	// AvailabilityZones: the catalog lists the region with zones.
	AvailabilityZones bool `json:"availabilityZones"`
	// ExternalEtcd: the region's state lives in an external etcd cluster.
	ExternalEtcd bool `json:"externalEtcd"`
	// AnsweredBy is the node that computed the status.
	AnsweredBy string `json:"answeredBy"`
	// Leader is the name of the leader member; empty when none is known.
	Leader  string         `json:"leader"`
	Members []RegionMember `json:"members"`
	// Nodes are the live registry entries of the region's nodes.
	Nodes         []RegionNode `json:"nodes"`
	VotingMembers int          `json:"votingMembers"`
	HealthyVoting int          `json:"healthyVotingMembers"`
	// Quorum: a majority of the voting members is healthy.
	Quorum bool `json:"quorum"`
	// Zones of the voting members; ZoneRedundant, and Reason when not.
	Zones         []string  `json:"zones"`
	ZoneRedundant bool      `json:"zoneRedundant"`
	Reason        string    `json:"reason,omitempty"`
	Time          time.Time `json:"time"`
}

// MemberAddRequest adds a member at run time.
type MemberAddRequest struct {
	// Name of the new node (its etcd member name). Required.
	Name string `json:"name"`
	// PeerURL is where the new member will listen for its peers
	// (http://host:port). Required.
	PeerURL string `json:"peerURL"`
	// Zone of the new node; recorded so that the status knows it before
	// the node joins.
	Zone string `json:"zone,omitempty"`
	// Learner adds a non-voting member, promoted later: the quorum does not
	// grow until the new member has caught up.
	Learner bool `json:"learner,omitempty"`
}

// MemberAddResult says how to start the new member's node.
type MemberAddResult struct {
	Member RegionMember `json:"member"`
	// InitialCluster lists every member, the new one included.
	InitialCluster string `json:"initialCluster"`
	// Flags are the `opendps serve` flags of the new node that follow from
	// the membership; it also needs its own data directory and listener
	// addresses.
	Flags []string `json:"flags"`
}

// MemberList is the body of GET /opendps/region/members.
type MemberList struct {
	Members []RegionMember `json:"members"`
}
