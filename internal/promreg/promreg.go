// Package promreg registers Prometheus collectors that several parts of
// one process (two handlers, two nodes of a dev deployment, tests) create
// alike: the first registration wins and later ones get the collector
// already registered, so every caller counts into the same series.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reuse registers c with reg, or returns the identical collector already
// registered there. Any other error (a collector of the same name with
// other labels or type) is returned with c.
func Reuse[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

// MustReuse is Reuse for collectors defined in code: a conflicting
// definition is a programming error and panics, as
// prometheus.MustRegister does.
func MustReuse[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	c, err := Reuse(reg, c)
	if err != nil {
		panic(err)
	}
	return c
}
