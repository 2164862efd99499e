// Package allocate chooses the IoT hub of a registering device and decides
// what re-registration does (spec/dps-protocol.md §7): the hashed,
// geoLatency, static and custom (webhook) allocation policies, hub health,
// and the reprovision policy's action and substatus.
//
// It is pure logic over internal/model records plus one HTTP client (the
// custom allocation webhook). It never touches the store or the hubs.
//
// # Candidate hubs
//
// The policy is the enrollment's allocationPolicy, else the instance
// default (ARM or service spelling), else hashed; custom cannot be the
// instance default. The candidates are the enrollment's iotHubs that are
// linked (legacy iotHubHostName when iotHubs is empty), or every linked hub
// when it names none; names compare case-insensitively. Then, following
// DPS ("the IoT hub can still be selected on an enrollment, but it won't
// participate in allocation"):
//
//   - hashed and geoLatency use only candidates with applyAllocationPolicy
//     true, even when the enrollment lists the others;
//   - static uses the one hub the enrollment names, whatever its
//     applyAllocationPolicy: naming it is the explicit selection;
//   - custom offers the webhook the listed hubs whatever their
//     applyAllocationPolicy (the enrollment chose them and the webhook is
//     the policy), or, when the enrollment lists none, the linked hubs
//     with applyAllocationPolicy true; a registered device whose
//     enrollment never reprovisions is offered only its current hub.
//
// Hubs a Health reports unhealthy are then removed (DPS keeps assigning to
// a dead hub). An empty set fails with CodeNoHub (400208) when nothing is
// configured, or CodeNoHealthyHub (503000, transient) when every candidate
// is down.
//
// # Policies
//
// hashed is weighted rendezvous hashing (Hashed); geoLatency prefers hubs
// located in the region of the serving node (GeoLatency documents the
// approximation); custom POSTs an AllocationRequest to the enrollment's
// webhook (Webhook) and fails with CodeCustomAllocationFailed (400210) on
// a non-2xx answer, a timeout (10 s by default), an unreadable answer or
// a hub outside linkedHubs, quoting the webhook's status and the start of
// its body.
//
// # Reprovisioning
//
// Decide turns (current assignment, allocated hub, reprovisionPolicy) into
// an Action and a substatus; its documentation lists the rules.
//
// All exported functions and types are safe for concurrent use.
package allocate
