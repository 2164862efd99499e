package allocate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

func group(policy string, hubs ...string) *model.EnrollmentGroup {
	return &model.EnrollmentGroup{EnrollmentGroupID: "g", EnrollmentCommon: model.EnrollmentCommon{
		AllocationPolicy: policy, IoTHubs: hubs,
		Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey},
	}}
}

var linked = []model.LinkedHub{
	{Name: "weu-a.azure-devices.net", Location: "westeurope", AllocationWeight: 1, ApplyAllocationPolicy: true},
	{Name: "weu-b.azure-devices.net", Location: "westeurope", AllocationWeight: 1, ApplyAllocationPolicy: true},
	{Name: "eus.azure-devices.net", Location: "eastus", AllocationWeight: 1, ApplyAllocationPolicy: true},
	{Name: "reserved.azure-devices.net", Location: "westeurope", AllocationWeight: 1000, ApplyAllocationPolicy: false},
}

func TestAllocate(t *testing.T) {
	down := HealthFunc(func(h string) bool { return !strings.HasPrefix(h, "weu-") })
	legacy := group("static")
	legacy.IoTHubHostName = "EUS.azure-devices.net"
	tests := []struct {
		name     string
		group    *model.EnrollmentGroup
		def      string
		region   string
		linked   []model.LinkedHub
		health   Health
		wantIn   []string // the hub must be one of these
		wantPol  string
		wantErr  error
		wantCode int
		wantMsg  string
	}{
		{name: "hashed over participating linked hubs", group: group(""), wantIn: []string{"weu-a.azure-devices.net", "weu-b.azure-devices.net", "eus.azure-devices.net"}, wantPol: "hashed"},
		{name: "instance default in ARM spelling", group: group(""), def: "GeoLatency", region: "West Europe", wantIn: []string{"weu-a.azure-devices.net", "weu-b.azure-devices.net"}, wantPol: "geoLatency"},
		{name: "listed hubs only", group: group("hashed", "EUS.azure-devices.net", "not-linked.azure-devices.net"), wantIn: []string{"eus.azure-devices.net"}, wantPol: "hashed"},
		{name: "listed hub without applyAllocationPolicy skipped", group: group("hashed", "reserved.azure-devices.net", "eus.azure-devices.net"), wantIn: []string{"eus.azure-devices.net"}},
		{name: "only non-participating hubs listed", group: group("hashed", "reserved.azure-devices.net"), wantErr: ErrNoHub, wantCode: CodeNoHub,
			wantMsg: "no candidate IoT hub participates in allocation: reserved.azure-devices.net has applyAllocationPolicy false"},
		{name: "listed hubs not linked", group: group("", "gone.azure-devices.net"), wantErr: ErrNoHub, wantCode: CodeNoHub,
			wantMsg: "the IoT hubs named by the enrollment are not linked to this instance: gone.azure-devices.net"},
		{name: "no linked hub", group: group(""), linked: []model.LinkedHub{}, wantErr: ErrNoHub, wantCode: CodeNoHub, wantMsg: "no IoT hub is linked to this instance"},
		{name: "unhealthy hubs skipped", group: group(""), health: down, wantIn: []string{"eus.azure-devices.net"}},
		{name: "geoLatency falls back when local hubs are down", group: group("geoLatency"), region: "westeurope", health: down, wantIn: []string{"eus.azure-devices.net"}},
		{name: "every candidate down", group: group("hashed", "weu-a.azure-devices.net"), health: down, wantErr: ErrNoHealthyHub, wantCode: CodeNoHealthyHub,
			wantMsg: "every candidate IoT hub is unavailable: weu-a.azure-devices.net"},
		{name: "static explicit non-participating hub", group: group("static", "reserved.azure-devices.net"), wantIn: []string{"reserved.azure-devices.net"}, wantPol: "static"},
		{name: "static legacy iotHubHostName", group: legacy, wantIn: []string{"eus.azure-devices.net"}, wantPol: "static"},
		{name: "static two hubs", group: group("static", "eus.azure-devices.net", "weu-a.azure-devices.net"), wantErr: ErrNoHub, wantCode: CodeNoHub,
			wantMsg: "static allocation needs exactly one IoT hub on the enrollment (iotHubs or iotHubHostName); it names 2"},
		{name: "static none", group: group("static"), wantErr: ErrNoHub, wantCode: CodeNoHub},
		{name: "static unlinked", group: group("static", "gone.azure-devices.net"), wantErr: ErrNoHub, wantMsg: `IoT hub "gone.azure-devices.net" named by the enrollment is not linked to this instance`},
		{name: "static hub down", group: group("static", "weu-a.azure-devices.net"), health: down, wantErr: ErrNoHealthyHub, wantCode: CodeNoHealthyHub},
		{name: "instance default custom refused", group: group(""), def: "custom", wantErr: ErrPolicy, wantCode: CodeNoHub},
		{name: "unknown policy", group: group("roundRobin"), wantErr: ErrPolicy, wantMsg: `allocation policy "roundRobin" of the enrollment is not supported`},
		{name: "custom without webhook client", group: group("custom"), wantErr: ErrPolicy, wantCode: CodeCustomAllocationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hubs := linked
			if tt.linked != nil {
				hubs = tt.linked
			}
			a := &Allocator{Health: tt.health}
			res, err := a.Allocate(context.Background(), Request{
				RegistrationID: "dev1", Group: tt.group, LinkedHubs: hubs, DefaultPolicy: tt.def, ServingRegion: tt.region,
			})
			if tt.wantErr != nil {
				checkError(t, err, tt.wantErr, tt.wantCode, tt.wantMsg)
				return
			}
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			found := false
			for _, h := range tt.wantIn {
				found = found || res.Hub == h
			}
			if !found {
				t.Errorf("hub = %q, want one of %v", res.Hub, tt.wantIn)
			}
			if tt.wantPol != "" && res.Policy != tt.wantPol {
				t.Errorf("policy = %q, want %q", res.Policy, tt.wantPol)
			}
		})
	}
}

// checkError checks an allocation failure.
func checkError(t *testing.T, err, want error, code int, msg string) {
	t.Helper()
	var ae *Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if !errors.Is(err, want) {
		t.Errorf("err = %v, want %v", err, want)
	}
	if code != 0 && ae.Code != code {
		t.Errorf("code = %d, want %d", ae.Code, code)
	}
	if msg != "" && ae.Message != msg {
		t.Errorf("message = %q\nwant      %q", ae.Message, msg)
	}
}

func TestAllocateIndividualOverridesGroup(t *testing.T) {
	ind := &model.IndividualEnrollment{RegistrationID: "dev1", EnrollmentCommon: model.EnrollmentCommon{AllocationPolicy: "static", IoTHubs: []string{"eus.azure-devices.net"}}}
	res, err := (&Allocator{}).Allocate(context.Background(), Request{RegistrationID: "dev1", Individual: ind, Group: group("hashed"), LinkedHubs: linked})
	if err != nil || res.Hub != "eus.azure-devices.net" || res.Policy != "static" {
		t.Errorf("got %+v, %v; want the individual enrollment's static hub", res, err)
	}
}
