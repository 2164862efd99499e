package allocate_test

import (
	"fmt"

	"github.com/opendps/opendps/internal/allocate"
	"github.com/opendps/opendps/internal/model"
)

// A device registers again after its group's hubs changed; the group's
// reprovision policy resets devices that move.
func ExampleDecide() {
	hubs := []model.LinkedHub{
		{Name: "hub-a.azure-devices.net", AllocationWeight: 1, ApplyAllocationPolicy: true},
		{Name: "hub-b.azure-devices.net", AllocationWeight: 1, ApplyAllocationPolicy: true},
	}
	h, _ := allocate.Hashed("thermostat-42", hubs)
	again, _ := allocate.Hashed("THERMOSTAT-42", hubs)
	fmt.Println(h.Name == again.Name)

	cur := &allocate.Assignment{Hub: "old-hub.azure-devices.net", DeviceID: "thermostat-42", Substatus: allocate.SubstatusInitialAssignment}
	d, _ := allocate.Decide(cur, h.Name, "thermostat-42", &model.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false})
	fmt.Println(d.Action, d.Substatus, d.ApplyInitialTwin, d.RemoveFrom)
	// Output:
	// true
	// reset deviceDataReset true old-hub.azure-devices.net
}
