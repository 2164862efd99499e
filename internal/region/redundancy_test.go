package region

import (
	"slices"
	"testing"

	"github.com/opendps/opendps/internal/regions"
)

func TestRedundancy(t *testing.T) {
	az := regions.Region{Name: "westeurope", AvailabilityZones: true}
	noAZ := regions.Region{Name: "westus", AvailabilityZones: false}
	m := func(name, zone string) Member { return Member{Name: name, Zone: zone} }
	learner := func(name, zone string) Member { return Member{Name: name, Zone: zone, IsLearner: true} }
	tests := []struct {
		name    string
		region  regions.Region
		members []Member
		ok      bool
		zones   []string
		reason  string
	}{
		{"three members in three zones", az, []Member{m("n1", "1"), m("n2", "2"), m("n3", "3")}, true, []string{"1", "2", "3"}, ""},
		{"five members in three zones", az, []Member{m("n1", "1"), m("n2", "1"), m("n3", "2"), m("n4", "2"), m("n5", "3")}, true, []string{"1", "2", "3"}, ""},
		{"two zones", az, []Member{m("n1", "1"), m("n2", "2")}, false, []string{"1", "2"},
			"2 voting members in 2 zones (1, 2); a zone-redundant region needs voting members in at least 3 zones"},
		{"one member", az, []Member{m("n1", "1")}, false, []string{"1"},
			"1 voting member in 1 zone (1); a zone-redundant region needs voting members in at least 3 zones"},
		{"three members in two zones", az, []Member{m("n1", "1"), m("n2", "1"), m("n3", "2")}, false, []string{"1", "2"},
			"3 voting members in 2 zones (1, 2); a zone-redundant region needs voting members in at least 3 zones"},
		{"a learner does not count", az, []Member{m("n1", "1"), m("n2", "2"), learner("n3", "3")}, false, []string{"1", "2"},
			"2 voting members in 2 zones (1, 2); a zone-redundant region needs voting members in at least 3 zones"},
		{"a learner beside three zones", az, []Member{m("n1", "1"), m("n2", "2"), m("n3", "3"), learner("n4", "1")}, true, []string{"1", "2", "3"}, ""},
		{"a zone holding half the members", az, []Member{m("n1", "1"), m("n2", "1"), m("n3", "2"), m("n4", "3")}, false, []string{"1", "2", "3"},
			"zone 1 holds 2 of the 4 voting members; losing it would leave 2, below the quorum of 3"},
		{"a member without zone", az, []Member{m("n1", "1"), m("n2", "2"), m("n3", "3"), m("n4", "")}, false, []string{"1", "2", "3"},
			"zone 1 holds 2 of the 4 voting members; losing it would leave 2, below the quorum of 3; the zone of n4 is not known"},
		{"no zone known", az, []Member{m("n1", ""), {ID: "8e9e05c52164694d"}}, false, nil,
			"2 voting members in 0 zones (none known); a zone-redundant region needs voting members in at least 3 zones; the zone of 8e9e05c52164694d, n1 is not known"},
		{"region without zones", noAZ, []Member{m("n1", "1"), m("n2", "2"), m("n3", "3")}, false, []string{"1", "2", "3"},
			"region westus has no availability zones in the catalog"},
		{"no voting member", az, []Member{learner("n1", "1")}, false, nil, "the region has no voting members"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, zones, reason := Redundancy(tt.region, tt.members)
			if ok != tt.ok || !slices.Equal(zones, tt.zones) || reason != tt.reason {
				t.Errorf("Redundancy = %t, %q, %q\nwant        %t, %q, %q", ok, zones, reason, tt.ok, tt.zones, tt.reason)
			}
		})
	}
}
