package allocate

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"strings"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/regions"
)

// Allocation weights of linked hubs (§7.1).
const (
	DefaultWeight = 1
	MaxWeight     = 1000
)

// Hashed picks a hub by weighted rendezvous hashing (§7.2): each hub
// scores -weight/ln(U), U in (0,1) taken from SHA-256(lower(registration
// id) ‖ 0x00 ‖ lower(host name)), and the highest score wins (ties: the
// smaller host name). The result depends only on the registration id and
// the set of (host name, weight) pairs, not on their order: a device stays
// on its hub while the set is unchanged, a hub's share is proportional to
// its weight, and removing a hub moves only the devices that were on it.
// Weights below 1 count as 1, above 1000 as 1000. ok is false when hubs is
// empty. Safe for concurrent use.
func Hashed(registrationID string, hubs []model.LinkedHub) (hub model.LinkedHub, ok bool) {
	id := strings.ToLower(registrationID)
	best, bestScore, bestName := -1, 0.0, ""
	for i := range hubs {
		name := strings.ToLower(hubs[i].Name)
		s := score(id, name, weight(hubs[i]))
		if best < 0 || s > bestScore || (s == bestScore && name < bestName) {
			best, bestScore, bestName = i, s, name
		}
	}
	if best < 0 {
		return model.LinkedHub{}, false
	}
	return hubs[best], true
}

// score is the rendezvous score of a (device, hub) pair.
func score(id, hub string, w int) float64 {
	var buf [320]byte
	b := append(buf[:0], id...)
	b = append(b, 0)
	b = append(b, hub...)
	sum := sha256.Sum256(b)
	x := binary.BigEndian.Uint64(sum[:8]) >> 11      // 53 random bits
	u := (float64(x) + 0.5) / float64(uint64(1)<<53) // strictly inside (0,1)
	return -float64(w) / math.Log(u)
}

func weight(h model.LinkedHub) int {
	switch {
	case h.AllocationWeight < DefaultWeight:
		return DefaultWeight
	case h.AllocationWeight > MaxWeight:
		return MaxWeight
	}
	return h.AllocationWeight
}

// GeoLatency approximates DPS's lowest-latency policy (§7.3), which
// measures latency like Traffic Manager. opendps has no view of the
// device's network position, but the node serving the request does have a
// region, and a device reaching that node is likely close to it: hubs whose
// location is servingRegion (compared as regions.Normalize does, so
// "West Europe" equals "westeurope") are preferred, and the device is hashed
// by weight among them (DPS also hashes ties by weight). With no such hub,
// or no serving region, it is Hashed over all hubs. Safe for concurrent
// use.
func GeoLatency(registrationID, servingRegion string, hubs []model.LinkedHub) (model.LinkedHub, bool) {
	if r := regions.Normalize(servingRegion); r != "" {
		var local []model.LinkedHub
		for _, h := range hubs {
			if regions.Normalize(h.Location) == r {
				local = append(local, h)
			}
		}
		if len(local) > 0 {
			return Hashed(registrationID, local)
		}
	}
	return Hashed(registrationID, hubs)
}
