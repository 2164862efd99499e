// Package enrollment holds the enrollment, enrollment group and
// registration-state logic of opendps over the store: validation of the
// service API models (spec/dps-protocol.md §6.3), generation of symmetric
// keys, X.509 certificate info, CA references, etags and If-Match, bulk
// operations and paged listings. It knows nothing of HTTP: the service API
// (internal/serviceapi) and the provisioning engine both call it.
//
// Records live under the instance prefix (DESIGN §4): enr/{registrationId},
// grp/{enrollmentGroupId}, reg/{registrationId} and the index
// reggrp/{enrollmentGroupId}/{registrationId}, ids case-folded. Every write
// is one fenced store transaction; nothing is written when an error is
// returned. Etags are new random quoted GUIDs on every write and live in
// the records, so they survive a failover.
//
// Decisions where DPS is silent or ambiguous:
//   - Updates keep secrets the client omits: symmetric keys, a TPM
//     endorsement key, and certificates sent back with their info only
//     (GET responses of the service API omit certificate text). Creation
//     generates missing symmetric keys (64 random bytes).
//   - If-Match on a missing record is ErrPrecondition (RFC 9110): it never
//     creates.
//   - Attestation type "none" is refused; groups refuse "tpm".
//   - reprovisionPolicy is stored as given; absent means
//     {updateHubAssignment: true, migrateDeviceData: true} to the engine.
//   - Deleting an enrollment or group keeps registration records.
//
// A Service is safe for concurrent use.
package enrollment
