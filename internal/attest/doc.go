// Package attest authenticates devices that register with opendps: SAS
// tokens signed with an individual enrollment's symmetric key or with a key
// derived from a group key, and X.509 certificate chains matched to an
// individual enrollment's client certificate or chained to a group's
// signing certificate or verified CA (spec/dps-protocol.md §3.1–§3.3).
//
// It is pure logic over internal/model records: the enrollments come from
// a small Enrollments interface the caller implements (MemEnrollments is an
// in-memory one), and the result is a Match the provisioning engine turns
// into an answer. Nothing here writes, logs or touches the network.
//
// # Matching order
//
// DPS applies the most specific enrollment first (§3.2, §3.3): when an
// individual enrollment exists for the registration id, it decides. A
// credential it refuses is refused (401), even if a group would accept it,
// and an individual enrollment of another attestation type refuses the
// device with a message saying so. The only way a group is consulted
// despite an individual enrollment keeps a device out: if the individual
// enrollment is disabled and a group accepts the credential, the Match is
// that group's, with Individual set and Disabled true (a disabled
// individual enrollment is how DPS blocks one device of a group). Without
// an individual enrollment, symmetric-key groups are tried in Enrollments
// order, and for X.509 the group whose anchor is closest to the leaf wins.
// Disabled enrollments and groups produce Disabled matches, never errors:
// the device did authenticate, and the engine answers status "disabled".
//
// # Errors
//
// A refusal is an *Error with the DPS errorCode CodeSASUnauthorized
// (401000) or CodeCertificateUnauthorized (401002), a message for the
// client, and a Cause wrapping a sentinel (ErrExpired, ErrAudience, ...).
// An unknown device is refused with 401 too, never 404201: DPS does not
// reveal which registration ids are enrolled to unauthenticated callers
// (404201 appears only as the errorCode of a failed TPM operation). For
// the same reason a bad SAS signature gets the same message whether or not
// an individual enrollment exists; the Cause (ErrSignature or
// ErrNoEnrollment) tells them apart in logs. X.509 refusals are precise on
// purpose (users asked for it): they name the certificate at fault and
// why (expired with its NotAfter, not yet valid, CN mismatch, unknown
// issuer with its name, CA not verified, invalid signature, issuer not a
// CA). Errors of the Enrollments source are returned wrapped, not as
// *Error, and mean 5xx.
//
// # Decisions where DPS is silent
//
//   - The registration id is compared case-insensitively (with the token
//     audience and with the leaf CN), as DPS ids are case-insensitive; the
//     group key derivation uses the registration id exactly as the request
//     spells it, which is what the device signed with.
//   - The leaf's validity is checked against Now before any lookup, for
//     individual enrollments too (DPS matches those by thumbprint).
//   - Group signing certificates are trusted as uploaded; CA references
//     are trusted only when the CA certificate is verified. A device
//     certificate that is itself a group's anchor is refused.
//
// An Attestor is safe for concurrent use.
package attest
