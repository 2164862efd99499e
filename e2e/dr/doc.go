// Package dr is the disaster suite of issue 6 (docs/dr-design.md,
// docs/dr.md): regions of `opendps serve` processes (dpstest/cluster
// NewRegions) joined by the peer link, a front door over them, and
// workloads of registrations (HTTPS and MQTT, group and individual
// enrollments) and enrollment writes whose every operation is recorded
// with its invoke and complete times and outcome.
//
// Scenarios (subtests of TestDisaster):
//
//  1. region loss: westeurope, primary of "default", is killed under load
//     through the front door (its link to northeurope cut a moment before,
//     so that the loss window is not empty) and failed over to
//     northeurope; the instance is served through the same front-door
//     endpoint and ID scope, old devices get their hub again, and every
//     acknowledged write missing in northeurope completed after the last
//     replicated time the failover reported.
//  2. residency: an instance with data residency in brazilsouth, with
//     canary ids, keys, payloads and name, takes traffic through the front
//     door (forwarded by the other regions) during the whole of 1 and 3;
//     no key or value of another region's etcd, no line of their logs (at
//     debug) and no series of their /metrics contains a canary, and its
//     failover is refused naming data residency.
//  3. fencing on return: westeurope comes back while clients write to its
//     own endpoints; no write after the failover is accepted by it (all are
//     refused or forwarded to northeurope), the writes missing from 1 are
//     in its lost-writes report, one primary per instance; then a planned
//     failback home under load loses nothing.
//  4. fencing with a cut link: a fresh pair; the primary is only cut off
//     from its secondary while its clients keep writing; the operator
//     fences it through its control API and fails over; it accepts nothing
//     after the fence, its divergent writes are in its lost-writes report
//     after the link mends, one primary per instance.
//  5. planned failover under load (and back home): every acknowledged
//     write is in the new primary's etcd; the single-key histories are
//     linearizable (porcupine, the model of e2e/fault).
//
// A summary per scenario is logged and written to $OPENDPS_DR_REPORT.
//
//	go test ./e2e/dr/                                   # CI: one node per region, ~2 min
//	OPENDPS_DR_NODES=3 OPENDPS_DR_LOAD=10s OPENDPS_DR_ROUNDS=3 go test -timeout 1h ./e2e/dr/
package dr
