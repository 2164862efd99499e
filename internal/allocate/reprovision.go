package allocate

import (
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Substatus values of an assigned registration (§2.4, §7.6).
const (
	SubstatusInitialAssignment                = "initialAssignment"
	SubstatusDeviceDataMigrated               = "deviceDataMigrated"
	SubstatusDeviceDataReset                  = "deviceDataReset"
	SubstatusReprovisionedToInitialAssignment = "reprovisionedToInitialAssignment"
)

// Action is what the engine does in the hubs for a registration.
type Action int

// Actions. The zero value is not a valid action.
const (
	// ActionAssign: first assignment; create the identity with the initial
	// twin.
	ActionAssign Action = iota + 1
	// ActionKeep: the device stays where it is and nothing changes in the
	// hub (an idempotent repeat of the registration).
	ActionKeep
	// ActionStay: allocation chose another hub, but the reprovision policy
	// never moves devices (updateHubAssignment false); nothing changes.
	ActionStay
	// ActionMigrate: move the identity, twin and capabilities to the new
	// hub, then delete it from the old one.
	ActionMigrate
	// ActionReset: give the device the enrollment's initial configuration,
	// on a new hub (then delete it from the old one) or in place.
	ActionReset
)

var actionNames = [...]string{"invalid", "assign", "keep", "stay", "migrate", "reset"}

// String returns the lower-case action name.
func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return actionNames[0]
	}
	return actionNames[a]
}

// Decision is the outcome of Decide.
type Decision struct {
	Action Action
	// Hub and DeviceID are where the device is after the action.
	Hub, DeviceID string
	// Substatus is the registration's new substatus.
	Substatus string
	// ApplyInitialTwin: write the initial twin (the webhook's when it gave
	// one, else the enrollment's). Only on assignment and resets, as DPS
	// uses a webhook's initialTwin (§7.4).
	ApplyInitialTwin bool
	// MigrateFrom is the hub whose twin and device data move (ActionMigrate).
	MigrateFrom string
	// RemoveFrom is the hub to delete the old identity from, once the new
	// one exists; empty when the device does not change hubs.
	RemoveFrom string
}

// Decide compares a device's current assignment with the newly allocated
// hub under the enrollment's reprovision policy (§7.6; nil means
// {updateHubAssignment: true, migrateDeviceData: true}). newDeviceID is the
// device id the enrollment gives now (its deviceId, else the registration
// id). Rules, in order:
//
//   - no current assignment (cur nil or cur.Hub empty): ActionAssign to
//     newHub, substatus initialAssignment, initial twin applied.
//   - same hub (host names compare case-insensitively), policy migrate or
//     never: ActionKeep, substatus unchanged (initialAssignment when the
//     record has none). A repeated registration is idempotent.
//   - updateHubAssignment false (never reprovision): ActionStay on the
//     current hub whatever newHub is (newHub may be empty: allocation can
//     be skipped), substatus unchanged.
//   - same hub, policy reset (update true, migrate false): ActionReset in
//     place, substatus deviceDataReset, initial twin applied: DPS documents
//     this policy as the way to factory-reset a device without changing
//     hubs.
//   - other hub, policy migrate: ActionMigrate, substatus
//     deviceDataMigrated; the device keeps its current device id.
//   - other hub, policy reset: ActionReset on newHub, substatus
//     deviceDataReset, or reprovisionedToInitialAssignment when newHub is
//     cur.InitialHub (the device goes back to the hub of its initial
//     assignment); the device gets newDeviceID and the initial twin.
//
// It fails with ErrNoHub only when a hub is needed and newHub is empty.
// Decide is a pure function.
func Decide(cur *Assignment, newHub, newDeviceID string, policy *model.ReprovisionPolicy) (Decision, error) {
	if cur == nil || cur.Hub == "" {
		if newHub == "" {
			return Decision{}, noHub("no IoT hub was allocated")
		}
		return Decision{Action: ActionAssign, Hub: newHub, DeviceID: newDeviceID, Substatus: SubstatusInitialAssignment, ApplyInitialTwin: true}, nil
	}
	p := effectivePolicy(policy)
	same := strings.EqualFold(cur.Hub, newHub)
	stay := Decision{Action: ActionKeep, Hub: cur.Hub, DeviceID: cur.DeviceID, Substatus: keepSubstatus(cur.Substatus)}
	switch {
	case same && (p.MigrateDeviceData || !p.UpdateHubAssignment):
		return stay, nil
	case !p.UpdateHubAssignment:
		stay.Action = ActionStay
		return stay, nil
	case newHub == "":
		return Decision{}, noHub("no IoT hub was allocated")
	case same:
		return Decision{Action: ActionReset, Hub: cur.Hub, DeviceID: cur.DeviceID, Substatus: SubstatusDeviceDataReset, ApplyInitialTwin: true}, nil
	case p.MigrateDeviceData:
		return Decision{Action: ActionMigrate, Hub: newHub, DeviceID: cur.DeviceID, Substatus: SubstatusDeviceDataMigrated, MigrateFrom: cur.Hub, RemoveFrom: cur.Hub}, nil
	}
	d := Decision{Action: ActionReset, Hub: newHub, DeviceID: newDeviceID, Substatus: SubstatusDeviceDataReset, ApplyInitialTwin: true, RemoveFrom: cur.Hub}
	if cur.InitialHub != "" && strings.EqualFold(cur.InitialHub, newHub) {
		d.Substatus = SubstatusReprovisionedToInitialAssignment
	}
	return d, nil
}

// effectivePolicy applies the DPS default to an absent policy.
func effectivePolicy(p *model.ReprovisionPolicy) model.ReprovisionPolicy {
	if p == nil {
		return model.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	}
	return *p
}

func keepSubstatus(s string) string {
	if s == "" {
		return SubstatusInitialAssignment
	}
	return s
}
