package region

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opendps/opendps/internal/regions"
)

// MinZones is how many zones the voting members of a zone-redundant region
// span at least (DESIGN §6).
const MinZones = 3

// Redundancy applies the zone-redundancy rule to the members of a region
// of the catalog: a region the catalog lists with availability zones is
// zone-redundant when its voting members (learners do not vote) span at
// least MinZones zones and no single zone holds so many of them that
// losing it would lose the quorum. It returns the zones of the voting
// members (sorted) and, when the region is not zone-redundant, why, in a
// sentence for operators. Members with an empty Zone are counted as being
// in an unknown zone, which could be any of the others.
func Redundancy(r regions.Region, members []Member) (ok bool, zones []string, reason string) {
	count := map[string]int{}
	var unknown []string
	voting := 0
	for _, m := range members {
		if m.IsLearner {
			continue
		}
		voting++
		if m.Zone == "" {
			unknown = append(unknown, m.DisplayName())
			continue
		}
		if count[m.Zone] == 0 {
			zones = append(zones, m.Zone)
		}
		count[m.Zone]++
	}
	slices.Sort(zones)
	slices.Sort(unknown)
	if !r.AvailabilityZones {
		return false, zones, fmt.Sprintf("region %s has no availability zones in the catalog", r.Name)
	}
	if voting == 0 {
		return false, zones, "the region has no voting members"
	}
	var why []string
	if len(zones) < MinZones {
		list := strings.Join(zones, ", ")
		if list == "" {
			list = "none known"
		}
		why = append(why, fmt.Sprintf("%s in %s (%s); a zone-redundant region needs voting members in at least %d zones",
			plural(voting, "voting member"), plural(len(zones), "zone"), list, MinZones))
	} else {
		quorum := voting/2 + 1
		for _, z := range zones {
			// Unknown members may be in z: count them as lost with it.
			if left := voting - count[z] - len(unknown); left < quorum {
				why = append(why, fmt.Sprintf("zone %s holds %d of the %s; losing it would leave %d, below the quorum of %d",
					z, count[z]+len(unknown), plural(voting, "voting member"), left, quorum))
				break
			}
		}
	}
	if len(unknown) > 0 {
		why = append(why, fmt.Sprintf("the zone of %s is not known", strings.Join(unknown, ", ")))
	}
	if len(why) > 0 {
		return false, zones, strings.Join(why, "; ")
	}
	return true, zones, ""
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
