package regions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuiltin(t *testing.T) {
	c := Builtin()
	tests := []struct {
		name, pair   string
		az, resident bool
	}{
		{"West Europe", "northeurope", true, false},
		{"brazilsouth", "southcentralus", true, true},
		{"Southeast Asia", "eastasia", false, true},
		{"eastus", "westus", true, false},
		{"westus2", "westcentralus", true, false},
		{"japanwest", "japaneast", false, false},
	}
	for _, tt := range tests {
		r, err := c.Lookup(tt.name)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", tt.name, err)
		}
		if r.PairedRegion != tt.pair || r.AvailabilityZones != tt.az || r.DataResidencyAllowed != tt.resident {
			t.Errorf("%s = %+v, want pair %s az %v residency %v", tt.name, r, tt.pair, tt.az, tt.resident)
		}
	}
	azCount := 0
	for _, r := range c.All() {
		if r.AvailabilityZones {
			azCount++
		}
		if r.PairedRegion != "" {
			if _, err := c.Lookup(r.PairedRegion); err != nil {
				t.Errorf("%s pairs with unknown %s", r.Name, r.PairedRegion)
			}
		}
	}
	if azCount != 12 {
		t.Errorf("%d regions with availability zones, want the 12 DPS lists", azCount)
	}
	if _, err := c.Lookup("atlantis"); err == nil {
		t.Error("unknown region accepted")
	}
}

func TestCheckDataResidency(t *testing.T) {
	c := Builtin()
	if err := c.CheckDataResidency("brazilsouth", true); err != nil {
		t.Errorf("brazilsouth: %v", err)
	}
	err := c.CheckDataResidency("westeurope", true)
	if err == nil || !strings.Contains(err.Error(), "Brazil South") {
		t.Errorf("westeurope: err = %v, want a refusal naming the allowed regions", err)
	}
	if err := c.CheckDataResidency("westeurope", false); err != nil {
		t.Errorf("westeurope without residency: %v", err)
	}
}

func TestLoadOverride(t *testing.T) {
	p := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(p, []byte(`[{"name":"Lab North","pairedRegion":"labsouth","availabilityZones":true},{"name":"labsouth","pairedRegion":"labnorth","dataResidencyAllowed":true}]`), 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Lookup("labnorth")
	if err != nil || r.PairedRegion != "labsouth" || !r.AvailabilityZones {
		t.Errorf("labnorth = %+v, %v", r, err)
	}
	if _, err := c.Lookup("westeurope"); err != nil {
		t.Errorf("builtin lost: %v", err)
	}
}
