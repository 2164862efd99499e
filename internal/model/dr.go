package model

import "time"

// Disaster recovery (DESIGN §7, docs/dr-design.md).
//
// An instance's directory entry (DirEntry) exists in its primary region
// and, when disaster recovery is enabled, in its secondary region too, with
// the same Primary, Secondary and Epoch; Role says what the entry's region
// is for the instance there:
//
//	primary    writes accepted here; replicated out to Secondary
//	fenced     was primary, writes refused; still replicated out (planned
//	           failover drains it) until a newer epoch arrives
//	secondary  read-only copy fed by replication from Primary
const RoleFenced = "fenced"

// Replication phases of a destination (ReplState.Phase).
const (
	ReplCopying   = "copying"   // base copy under way: the copy is incomplete
	ReplStreaming = "streaming" // base copy done; changes applied in order
)

// ReplState is stored in the destination region at /opendps/repl/{instance},
// in the same transaction as every batch of replicated data it describes.
type ReplState struct {
	Instance string `json:"instance"`
	// Source is the region the data came from, at Epoch.
	Source string `json:"source"`
	Epoch  uint64 `json:"epoch"`
	Phase  string `json:"phase"`
	// BaseRev is the source revision of the last base copy.
	BaseRev int64 `json:"baseRev"`
	// Rev is the last source revision applied completely.
	Rev int64 `json:"rev"`
	// SourceTime is when the source committed Rev (as the source saw it);
	// AppliedAt when the destination applied it.
	SourceTime time.Time `json:"sourceTime"`
	AppliedAt  time.Time `json:"appliedAt"`
}

// ReplStatus is the source's view of one instance's stream, stored in the
// source region at /opendps/replstatus/{instance} (about once a second by
// the elected replicator) for the CLI, the control API and the console.
type ReplStatus struct {
	Instance    string `json:"instance"`
	Destination string `json:"destination"`
	Epoch       uint64 `json:"epoch"`
	Phase       string `json:"phase"`
	// SourceRev is the newest revision of the instance seen at the source;
	// AckedRev the newest the destination acknowledged.
	SourceRev int64 `json:"sourceRev"`
	AckedRev  int64 `json:"ackedRev"`
	// LagMs is the replication lag: 0 when AckedRev = SourceRev, else the
	// age of the oldest unacknowledged change. LastLagMs is the commit-to-
	// acknowledgement time of the last acknowledged batch.
	LagMs     float64   `json:"lagMs"`
	LastLagMs float64   `json:"lastLagMs"`
	AckedAt   time.Time `json:"ackedAt"`
	Connected bool      `json:"connected"`
	Error     string    `json:"error,omitempty"`
	Updated   time.Time `json:"updated"`
}

// LostWrite is one change an old primary holds that never reached the new
// primary.
type LostWrite struct {
	Key     string `json:"key"`
	Rev     int64  `json:"rev"`
	Deleted bool   `json:"deleted,omitempty"`
	Value   string `json:"value,omitempty"` // JSON record as stored
}

// LostWrites is the report an old primary writes when it learns that a
// newer epoch superseded it, at /opendps/lost/{instance}/{epoch}. It is
// kept until an operator deletes it; nothing in it is merged.
type LostWrites struct {
	Instance   string `json:"instance"`
	Region     string `json:"region"` // where the writes were accepted
	OldEpoch   uint64 `json:"oldEpoch"`
	NewEpoch   uint64 `json:"newEpoch"`
	NewPrimary string `json:"newPrimary"`
	// AckedRev is the last revision of the old primary that the
	// destination acknowledged; the writes are those after it.
	AckedRev   int64       `json:"ackedRev"`
	DetectedAt time.Time   `json:"detectedAt"`
	Writes     []LostWrite `json:"writes"`
	// Complete is false when the old history was compacted and only the
	// keys still present (not deletions) could be listed.
	Complete bool `json:"complete"`
}

// FailoverItem is the outcome of a failover for one instance.
type FailoverItem struct {
	Instance string `json:"instance"`
	From     string `json:"from"`
	To       string `json:"to"`
	Epoch    uint64 `json:"epoch"`  // the new epoch
	Status   string `json:"status"` // "promoted", "refused", "skipped"
	Reason   string `json:"reason,omitempty"`
	// LastReplicatedRev and LastReplicatedTime say what the new primary
	// has: source writes committed after that time may be lost.
	LastReplicatedRev  int64     `json:"lastReplicatedRev"`
	LastReplicatedTime time.Time `json:"lastReplicatedTime"`
	// OldPrimaryFenced is true when the old primary was fenced directly;
	// otherwise it is fenced when it next reaches this region.
	OldPrimaryFenced bool `json:"oldPrimaryFenced"`
}

// FailoverReport is the answer of a failover command.
type FailoverReport struct {
	Region   string         `json:"region"` // the region failed over from
	To       string         `json:"to"`
	Planned  bool           `json:"planned"`
	Started  time.Time      `json:"started"`
	Duration time.Duration  `json:"durationNs"`
	Items    []FailoverItem `json:"items"`
}
