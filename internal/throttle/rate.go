package throttle

import "time"

// rate is a token bucket in GCRA form: a bucket of burst tokens refilled
// at one token per interval. Its state is the theoretical arrival time
// (tat) of the next request, in nanoseconds since the Limiter's epoch; a
// tat at or before now means a full bucket.
type rate struct {
	interval  int64 // ns per token; 0 means unlimited
	tolerance int64 // (burst-1) * interval: how far tat may run ahead of now
}

// newRate returns count tokens per period with a burst of count; count <=
// 0 is unlimited.
func newRate(count int, period time.Duration) rate {
	if count <= 0 {
		return rate{}
	}
	iv := max(int64(period)/int64(count), 1)
	return rate{interval: iv, tolerance: iv * int64(count-1)}
}

func (r rate) unlimited() bool { return r.interval == 0 }

// take decides one request at now given the stored tat. On success it
// returns the tat to store; on refusal, the wait until a token is free.
func (r rate) take(tat, now int64) (newTat int64, ok bool, wait int64) {
	if tat < now {
		tat = now
	}
	if ahead := tat - now; ahead > r.tolerance {
		return 0, false, ahead - r.tolerance
	}
	return tat + r.interval, true, 0
}
