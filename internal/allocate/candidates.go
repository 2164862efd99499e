package allocate

import (
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// candidates are the hubs an enrollment may use (§7.1).
type candidates struct {
	hubs     []model.LinkedHub // listed ∩ linked, or all linked
	listed   bool              // the enrollment names its hubs
	unlinked []string          // names the enrollment lists that are not linked
	skipped  []string          // candidates with applyAllocationPolicy false
}

// candidatesOf returns the enrollment's iotHubs that are linked (legacy
// iotHubHostName when iotHubs is empty), or every linked hub when it names
// none. Names compare case-insensitively; the linked spelling is kept.
func candidatesOf(ec *model.EnrollmentCommon, linked []model.LinkedHub) candidates {
	names := ec.IoTHubs
	if len(names) == 0 && ec.IoTHubHostName != "" {
		names = []string{ec.IoTHubHostName}
	}
	if len(names) == 0 {
		return candidates{hubs: linked}
	}
	c := candidates{listed: true}
	for _, n := range names {
		if h, ok := findHub(linked, n); ok {
			c.hubs = append(c.hubs, h)
		} else {
			c.unlinked = append(c.unlinked, n)
		}
	}
	return c
}

// participating keeps the candidates with applyAllocationPolicy: a hub
// with false never takes part in hashed or geoLatency allocation, even
// when the enrollment lists it (DPS: "The IoT hub can still be selected on
// an enrollment, but it won't participate in allocation").
func participating(c candidates) candidates {
	var in []model.LinkedHub
	for _, h := range c.hubs {
		if h.ApplyAllocationPolicy {
			in = append(in, h)
		} else {
			c.skipped = append(c.skipped, h.Name)
		}
	}
	c.hubs = in
	return c
}

// offered is what custom allocation offers the webhook: listed hubs
// whatever their applyAllocationPolicy (the enrollment chose them
// explicitly, and the webhook is the policy), otherwise the linked hubs
// that participate in allocation.
func offered(c candidates) candidates {
	if c.listed {
		return c
	}
	return participating(c)
}

// live removes unhealthy hubs and fails when nothing is left.
func (a *Allocator) live(c candidates) ([]model.LinkedHub, error) {
	if len(c.hubs) == 0 {
		return nil, noHubError(c)
	}
	if a.Health == nil {
		return c.hubs, nil
	}
	var out []model.LinkedHub
	var down []string
	for _, h := range c.hubs {
		if a.Health.Healthy(h.Name) {
			out = append(out, h)
		} else {
			down = append(down, h.Name)
		}
	}
	if len(out) == 0 {
		return nil, fail(CodeNoHealthyHub, ErrNoHealthyHub, "every candidate IoT hub is unavailable: %s", strings.Join(down, ", "))
	}
	return out, nil
}

// noHubError explains an empty candidate set.
func noHubError(c candidates) *Error {
	switch {
	case len(c.skipped) > 0:
		return noHub("no candidate IoT hub participates in allocation: %s %s applyAllocationPolicy false", strings.Join(c.skipped, ", "), plural(len(c.skipped), "has", "have"))
	case len(c.unlinked) > 0:
		return noHub("the IoT hubs named by the enrollment are not linked to this instance: %s", strings.Join(c.unlinked, ", "))
	}
	return noHub("no IoT hub is linked to this instance")
}

func findHub(linked []model.LinkedHub, name string) (model.LinkedHub, bool) {
	for _, h := range linked {
		if strings.EqualFold(h.Name, name) {
			return h, true
		}
	}
	return model.LinkedHub{}, false
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
