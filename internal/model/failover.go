package model

// Requests and answers of fencing and failover (docs/dr-design.md,
// "Failover"; internal/dr, the region API and the peer link).

// FenceRequest asks the primary region of instances to fence them: role
// fenced at the same epoch, so that no write commits there any more while
// replication carries on (a planned failover drains it).
type FenceRequest struct {
	// Primary is the region asked to fence (the instances' primary); empty
	// means the region answering.
	Primary string `json:"primary,omitempty"`
	// Instances to fence; empty means every DR-enabled instance primary in
	// Primary (over the peer link: those whose secondary is the caller).
	Instances []string `json:"instances,omitempty"`
	// NewPrimary is the region about to take the instances over; when set
	// it must be their secondary.
	NewPrimary string `json:"newPrimary,omitempty"`
	// Undo lifts a fence (role primary again, same epoch): after a planned
	// failover that could not drain.
	Undo bool `json:"undo,omitempty"`
}

// FenceItem is the outcome of a fence for one instance.
type FenceItem struct {
	Instance string `json:"instance"`
	Epoch    uint64 `json:"epoch"`
	// Role is the instance's role in the fenced region afterwards.
	Role   string `json:"role"`
	Status string `json:"status"` // "fenced", "unfenced", "refused"
	Reason string `json:"reason,omitempty"`
	// SourceRev is the revision of the fence: every write the region
	// accepted for the instance has a lower revision, and the stream
	// carries the fence itself (it watches the directory key), so a
	// destination whose ReplState.Rev reached it holds every write.
	SourceRev int64 `json:"sourceRev"`
	// DataRev is the last revision that changed the instance's prefix
	// before the fence (<= SourceRev): a stream that watches the prefix
	// only reaches it, not SourceRev. A destination at DataRev or later
	// holds every write.
	DataRev int64 `json:"dataRev"`
}

// FenceResult is the answer of a fence.
type FenceResult struct {
	Region string      `json:"region"` // the region fenced
	Items  []FenceItem `json:"items"`
}

// FailoverRequest asks the secondary side to promote itself.
type FailoverRequest struct {
	// From is the region failed over from (the instances' primary); empty
	// only with Instances: each instance's own primary.
	From string `json:"region,omitempty"`
	// Instances to fail over; empty: every DR-enabled instance whose
	// primary is From.
	Instances []string `json:"instances,omitempty"`
	// Planned fences From over the peer link and waits until everything
	// it accepted was replicated here before promoting: nothing is lost.
	Planned bool `json:"planned,omitempty"`
	// Force promotes a copy still in its base copy, and ignores the
	// failover cool-down.
	Force bool `json:"force,omitempty"`
	// FencedDirectly says the caller fenced From through From's own
	// control API before asking (the CLI does, best effort).
	FencedDirectly bool `json:"fencedDirectly,omitempty"`
}

// Failover outcomes (FailoverItem.Status).
const (
	FailoverPromoted = "promoted"
	FailoverRefused  = "refused"
	FailoverSkipped  = "skipped"
)

// Fence outcomes (FenceItem.Status).
const (
	FenceFenced   = "fenced"
	FenceUnfenced = "unfenced"
	FenceRefused  = "refused"
)
