// Package regions is the catalog of regions a deployment knows: display
// name, paired region (the secondary of disaster recovery), whether DPS
// has availability zones there, and whether tenants may opt out of
// disaster recovery (data residency) there.
//
// Facts from spec/hadr-anchors.md §1.9 (region pairs) and
// spec/dps-protocol.md §8.3 (enableDataResidency: Brazil South and
// Southeast Asia only). The built-in catalog can be replaced or extended by
// a JSON file (Load).
package regions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// ErrUnknownRegion is returned for a region the catalog does not list.
var ErrUnknownRegion = errors.New("regions: unknown region")

// Region is one catalog entry.
type Region struct {
	Name                 string `json:"name"` // e.g. "westeurope"
	DisplayName          string `json:"displayName"`
	PairedRegion         string `json:"pairedRegion,omitempty"` // "" when the region has no pair
	AvailabilityZones    bool   `json:"availabilityZones"`
	DataResidencyAllowed bool   `json:"dataResidencyAllowed"`
}

// Catalog is an immutable set of regions, safe for concurrent use.
type Catalog struct {
	byName map[string]Region
}

// builtin: display name, pair display name, AZ for DPS, residency allowed.
var builtin = [][4]string{
	{"Australia Central", "Australia Central 2", "", ""},
	{"Australia Central 2", "Australia Central", "", ""},
	{"Australia East", "Australia Southeast", "az", ""},
	{"Australia Southeast", "Australia East", "", ""},
	{"Brazil South", "South Central US", "az", "residency"},
	{"Brazil Southeast", "Brazil South", "", ""},
	{"Canada Central", "Canada East", "az", ""},
	{"Canada East", "Canada Central", "", ""},
	{"Central India", "South India", "", ""},
	{"South India", "Central India", "", ""},
	{"West India", "South India", "", ""},
	{"Central US", "East US 2", "az", ""},
	{"East US 2", "Central US", "az", ""},
	{"East US", "West US", "az", ""},
	{"West US", "East US", "", ""},
	{"West US 3", "East US", "", ""},
	{"North Central US", "South Central US", "", ""},
	{"South Central US", "North Central US", "", ""},
	{"West US 2", "West Central US", "az", ""},
	{"West Central US", "West US 2", "", ""},
	{"East Asia", "Southeast Asia", "", ""},
	{"Southeast Asia", "East Asia", "", "residency"},
	{"North Europe", "West Europe", "az", ""},
	{"West Europe", "North Europe", "az", ""},
	{"France Central", "France South", "az", ""},
	{"France South", "France Central", "", ""},
	{"Germany West Central", "Germany North", "", ""},
	{"Germany North", "Germany West Central", "", ""},
	{"Japan East", "Japan West", "az", ""},
	{"Japan West", "Japan East", "", ""},
	{"Korea Central", "Korea South", "", ""},
	{"Korea South", "Korea Central", "", ""},
	{"Norway East", "Norway West", "", ""},
	{"Norway West", "Norway East", "", ""},
	{"South Africa North", "South Africa West", "", ""},
	{"South Africa West", "South Africa North", "", ""},
	{"Sweden Central", "Sweden South", "", ""},
	{"Sweden South", "Sweden Central", "", ""},
	{"Switzerland North", "Switzerland West", "", ""},
	{"Switzerland West", "Switzerland North", "", ""},
	{"UAE North", "UAE Central", "", ""},
	{"UAE Central", "UAE North", "", ""},
	{"UK South", "UK West", "az", ""},
	{"UK West", "UK South", "", ""},
}

// Normalize turns a display name or name into the catalog key
// ("West Europe" -> "westeurope").
func Normalize(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// Builtin returns the built-in catalog.
func Builtin() *Catalog {
	c := &Catalog{byName: map[string]Region{}}
	for _, b := range builtin {
		r := Region{Name: Normalize(b[0]), DisplayName: b[0], PairedRegion: Normalize(b[1]),
			AvailabilityZones: b[2] == "az", DataResidencyAllowed: b[3] == "residency"}
		c.byName[r.Name] = r
	}
	return c
}

// Load returns the built-in catalog with the entries of the JSON file at
// path (an array of Region) added or replacing built-in ones. An empty path
// returns Builtin().
func Load(path string) (*Catalog, error) {
	c := Builtin()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("regions: %w", err)
	}
	var rs []Region
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("regions: %s: %w", path, err)
	}
	for _, r := range rs {
		r.Name = Normalize(r.Name)
		r.PairedRegion = Normalize(r.PairedRegion)
		if r.Name == "" {
			return nil, fmt.Errorf("regions: %s: an entry has no name", path)
		}
		if r.DisplayName == "" {
			r.DisplayName = r.Name
		}
		c.byName[r.Name] = r
	}
	return c, c.validate()
}

func (c *Catalog) validate() error {
	for _, r := range c.byName {
		if r.PairedRegion == r.Name {
			return fmt.Errorf("regions: %s is paired with itself", r.Name)
		}
	}
	return nil
}

// Lookup returns the region named name (display name or name).
func (c *Catalog) Lookup(name string) (Region, error) {
	r, ok := c.byName[Normalize(name)]
	if !ok {
		return Region{}, fmt.Errorf("%w %q", ErrUnknownRegion, name)
	}
	return r, nil
}

// All returns every region sorted by name.
func (c *Catalog) All() []Region {
	out := make([]Region, 0, len(c.byName))
	for _, r := range c.byName {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CheckDataResidency returns nil when an instance in region may have
// enableDataResidency set to want, or an error saying why not.
func (c *Catalog) CheckDataResidency(region string, want bool) error {
	r, err := c.Lookup(region)
	if err != nil {
		return err
	}
	if want && !r.DataResidencyAllowed {
		return fmt.Errorf("enableDataResidency is only allowed in regions that permit opting out of disaster recovery (%s); %s (%s) replicates to its paired region", strings.Join(c.residencyRegions(), ", "), r.DisplayName, r.Name)
	}
	return nil
}

func (c *Catalog) residencyRegions() []string {
	var out []string
	for _, r := range c.All() {
		if r.DataResidencyAllowed {
			out = append(out, r.DisplayName)
		}
	}
	return out
}
