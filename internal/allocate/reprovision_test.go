package allocate

import (
	"errors"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

func TestDecide(t *testing.T) {
	migrate := &model.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	reset := &model.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false}
	never := &model.ReprovisionPolicy{UpdateHubAssignment: false, MigrateDeviceData: true}
	neverNoMigrate := &model.ReprovisionPolicy{}
	onA := &Assignment{Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated, InitialHub: "b.net"}
	tests := []struct {
		name   string
		cur    *Assignment
		newHub string
		policy *model.ReprovisionPolicy
		want   Decision
		err    error
	}{
		{name: "first registration", cur: nil, newHub: "a.net", policy: reset,
			want: Decision{Action: ActionAssign, Hub: "a.net", DeviceID: "new-id", Substatus: SubstatusInitialAssignment, ApplyInitialTwin: true}},
		{name: "record without hub is a first registration", cur: &Assignment{}, newHub: "a.net",
			want: Decision{Action: ActionAssign, Hub: "a.net", DeviceID: "new-id", Substatus: SubstatusInitialAssignment, ApplyInitialTwin: true}},
		{name: "first registration without hub", cur: nil, newHub: "", err: ErrNoHub},
		{name: "same hub, default policy: keep", cur: &Assignment{Hub: "a.net", DeviceID: "dev1"}, newHub: "A.NET",
			want: Decision{Action: ActionKeep, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusInitialAssignment}},
		{name: "same hub keeps substatus", cur: onA, newHub: "a.net", policy: migrate,
			want: Decision{Action: ActionKeep, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated}},
		{name: "same hub, never", cur: onA, newHub: "a.net", policy: never,
			want: Decision{Action: ActionKeep, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated}},
		{name: "same hub, reset: factory reset in place", cur: onA, newHub: "a.net", policy: reset,
			want: Decision{Action: ActionReset, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataReset, ApplyInitialTwin: true}},
		{name: "new hub, never: stay", cur: onA, newHub: "c.net", policy: never,
			want: Decision{Action: ActionStay, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated}},
		{name: "never with migrate false: stay", cur: onA, newHub: "c.net", policy: neverNoMigrate,
			want: Decision{Action: ActionStay, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated}},
		{name: "never, allocation skipped", cur: onA, newHub: "", policy: never,
			want: Decision{Action: ActionStay, Hub: "a.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated}},
		{name: "new hub, migrate", cur: onA, newHub: "c.net", policy: migrate,
			want: Decision{Action: ActionMigrate, Hub: "c.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated, MigrateFrom: "a.net", RemoveFrom: "a.net"}},
		{name: "new hub, absent policy migrates", cur: &Assignment{Hub: "a.net", DeviceID: "dev1"}, newHub: "c.net",
			want: Decision{Action: ActionMigrate, Hub: "c.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated, MigrateFrom: "a.net", RemoveFrom: "a.net"}},
		{name: "new hub, migrate back to initial hub", cur: onA, newHub: "b.net", policy: migrate,
			want: Decision{Action: ActionMigrate, Hub: "b.net", DeviceID: "dev1", Substatus: SubstatusDeviceDataMigrated, MigrateFrom: "a.net", RemoveFrom: "a.net"}},
		{name: "new hub, reset", cur: onA, newHub: "c.net", policy: reset,
			want: Decision{Action: ActionReset, Hub: "c.net", DeviceID: "new-id", Substatus: SubstatusDeviceDataReset, ApplyInitialTwin: true, RemoveFrom: "a.net"}},
		{name: "reset back to the initial hub", cur: onA, newHub: "B.net", policy: reset,
			want: Decision{Action: ActionReset, Hub: "B.net", DeviceID: "new-id", Substatus: SubstatusReprovisionedToInitialAssignment, ApplyInitialTwin: true, RemoveFrom: "a.net"}},
		{name: "update without allocated hub", cur: onA, newHub: "", policy: migrate, err: ErrNoHub},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.cur, tt.newHub, "new-id", tt.policy)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Decide =\n %+v, want\n %+v", got, tt.want)
			}
		})
	}
	if s := ActionMigrate.String(); s != "migrate" {
		t.Errorf("ActionMigrate.String() = %q", s)
	}
}
