package throttle_test

import (
	"fmt"

	"github.com/opendps/opendps/internal/throttle"
)

// The DPS limit of 5 polls per 10 s per device: the sixth poll in a burst
// is refused with Retry-After 2 s (one token every 2 s).
func Example() {
	l, err := throttle.New(throttle.Config{PollsPer10s: 5})
	if err != nil {
		panic(err)
	}
	for i := 1; i <= 6; i++ {
		ok, retryAfter := l.AllowPoll("default", "device-1")
		fmt.Println(i, ok, retryAfter)
	}
	// Output:
	// 1 true 0s
	// 2 true 0s
	// 3 true 0s
	// 4 true 0s
	// 5 true 0s
	// 6 false 2s
}
