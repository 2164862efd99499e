// Package throttle holds the rate limits of the provisioning engine
// (spec/dps-protocol.md §9): registrations and operations per instance,
// and operation-status polls per device.
//
// Every limit is a token bucket kept as a GCRA "theoretical arrival time"
// (one int64 per key): a bucket of capacity B refilled at B tokens per
// period. A key whose arrival time lies in the past holds a full bucket,
// which is exactly the state of a key never seen, so such entries carry no
// information and are dropped by sweeps; this is what keeps per-device
// state small (a device that stopped polling costs nothing after one
// period).
//
// The engine calls the Allow methods before doing work and answers 429
// with the returned Retry-After when they refuse:
//
//	l, err := throttle.New(throttle.DefaultConfig())
//	if err != nil { ... }
//	if ok, wait := l.AllowRegister(instance); !ok {
//		return apierr.New(apierr.CodeThrottled, "Too many requests.") // + Retry-After: wait
//	}
//
// Every method of a *Limiter is safe for concurrent use.
package throttle
