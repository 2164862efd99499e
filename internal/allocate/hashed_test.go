package allocate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

func hub(name string, weight int) model.LinkedHub {
	return model.LinkedHub{Name: name, AllocationWeight: weight, ApplyAllocationPolicy: true}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("device-%05d", i)
	}
	return out
}

func assign(t *testing.T, devices []string, hubs []model.LinkedHub) map[string]string {
	t.Helper()
	out := make(map[string]string, len(devices))
	for _, d := range devices {
		h, ok := Hashed(d, hubs)
		if !ok {
			t.Fatal("Hashed: no hub")
		}
		out[d] = h.Name
	}
	return out
}

func TestHashedDeterministic(t *testing.T) {
	hubs := []model.LinkedHub{hub("a.azure-devices.net", 1), hub("b.azure-devices.net", 3), hub("c.azure-devices.net", 2)}
	devices := ids(2000)
	want := assign(t, devices, hubs)
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := append([]model.LinkedHub(nil), hubs...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := assign(t, devices, shuffled)
		for d, h := range want {
			if got[d] != h {
				t.Fatalf("device %s: %s after shuffle, %s before", d, got[d], h)
			}
		}
	}
	// Case of registration ids and host names does not matter.
	upper := append([]model.LinkedHub(nil), hubs...)
	for i := range upper {
		upper[i].Name = strings.ToUpper(upper[i].Name)
	}
	for _, d := range devices[:200] {
		h, _ := Hashed(strings.ToUpper(d), upper)
		if !strings.EqualFold(h.Name, want[d]) {
			t.Fatalf("device %s: %s in upper case, %s in lower case", d, h.Name, want[d])
		}
	}
	if _, ok := Hashed("x", nil); ok {
		t.Errorf("Hashed with no hubs: ok")
	}
}

func TestHashedDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"equal", []int{1, 1, 1, 1}},
		{"weighted", []int{1, 2, 3, 4}},
		{"default weight 0 counts as 1", []int{0, 1, 2}},
		{"heavy", []int{1000, 1}},
	}
	devices := ids(20000)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hubs []model.LinkedHub
			total := 0
			for i, w := range tt.weights {
				hubs = append(hubs, hub(fmt.Sprintf("hub-%d.azure-devices.net", i), w))
				total += weight(hubs[i])
			}
			counts := map[string]int{}
			for _, h := range assign(t, devices, hubs) {
				counts[h]++
			}
			for _, h := range hubs {
				want := float64(weight(h)) / float64(total)
				got := float64(counts[h.Name]) / float64(len(devices))
				if math.Abs(got-want) > 0.015 {
					t.Errorf("%s (weight %d): share %.3f, want %.3f ± 0.015", h.Name, h.AllocationWeight, got, want)
				}
			}
		})
	}
}

func TestHashedMinimalMovement(t *testing.T) {
	hubs := []model.LinkedHub{hub("a", 1), hub("b", 2), hub("c", 1), hub("d", 3)}
	devices := ids(20000)
	before := assign(t, devices, hubs)
	removed := "b"
	after := assign(t, devices, []model.LinkedHub{hubs[0], hubs[2], hubs[3]})
	moved := 0
	for _, d := range devices {
		if before[d] == after[d] {
			continue
		}
		if before[d] != removed {
			t.Fatalf("device %s moved from %s to %s though %s was removed", d, before[d], after[d], removed)
		}
		moved++
	}
	if moved == 0 {
		t.Fatal("no device moved")
	}
	// Adding a hub only takes devices to the new hub.
	grown := assign(t, devices, append(hubs, hub("e", 2)))
	for _, d := range devices {
		if grown[d] != before[d] && grown[d] != "e" {
			t.Fatalf("device %s moved from %s to %s when e was added", d, before[d], grown[d])
		}
	}
}

func TestGeoLatency(t *testing.T) {
	hubs := []model.LinkedHub{
		{Name: "weu-1", Location: "West Europe", AllocationWeight: 1},
		{Name: "weu-2", Location: "westeurope", AllocationWeight: 1},
		{Name: "eus-1", Location: "eastus", AllocationWeight: 5},
	}
	counts := map[string]int{}
	for _, d := range ids(2000) {
		h, _ := GeoLatency(d, "WestEurope", hubs)
		counts[h.Name]++
		all, _ := Hashed(d, hubs)
		for _, region := range []string{"", "japaneast"} {
			if h, _ := GeoLatency(d, region, hubs); h.Name != all.Name {
				t.Fatalf("serving region %q: %s, want %s (hashed over all hubs)", region, h.Name, all.Name)
			}
		}
	}
	if counts["eus-1"] != 0 || counts["weu-1"] < 800 || counts["weu-2"] < 800 {
		t.Errorf("west europe node: %v, want only weu hubs, evenly", counts)
	}
}
