// Package forward makes every node accept every ID scope and every
// instance's service API (docs/dr-design.md, "Forwarding and the global
// endpoint"): a request for an instance that is not primary in this region
// is sent over the peer link (internal/peer) to the region where it is.
//
// Device wraps the local provisioning engine (engine.Device). For each
// request it resolves the ID scope in the local store and reads the
// instance's directory entry:
//
//	role primary    the local engine answers
//	role fenced     503 with Retry-After: 1 (a failover is under way)
//	role secondary  the request is forwarded to the entry's Primary
//	unknown scope   the peers are asked (GET /opendps/peer/locate/{scope});
//	                their answer is cached for LocateTTL (NegativeTTL when
//	                nobody has the scope, which then answers the engine's
//	                404 for an unknown scope)
//
// A forwarded request is POST /opendps/peer/device/{register,operation,
// status,auth} with the parsed request (wireRequest); the receiving region
// answers it with its local engine only (never forwarding again), or 503
// when the instance is not primary there either. Errors travel in the DPS
// error shape and are reproduced exactly (status, errorCode, message,
// Retry-After).
//
// Service wraps the service API handler the same way and reverse-proxies
// requests for an instance that is not primary here to
// /opendps/peer/service/... of its primary, Host and Authorization kept.
//
// Data residency: nothing of a forwarded request is written to the
// forwarding region's store, logged with its identifiers (ID scope,
// registration id, keys, instance name) or used as a metric label there.
// The forwarding node logs only region names and status codes. The locate
// cache (ID scope or instance name -> region) lives in memory for a few
// seconds and is never persisted.
//
// Mount adds the receiving side's handlers to the peer listener's mux.
package forward
