package enrollment_test

import (
	"context"
	"fmt"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/store"
)

// The provisioning engine looks up the enrollment of a device and writes
// its registration record, which also indexes it under its group.
func Example() {
	ctx := context.Background()
	var st *store.Store // from store.Open
	svc := enrollment.New(st)

	e, err := svc.PutEnrollment(ctx, "default", &model.IndividualEnrollment{
		RegistrationID:   "device-01",
		EnrollmentCommon: model.EnrollmentCommon{Attestation: &model.AttestationMechanism{Type: model.AttestationSymmetricKey}},
	}, "")
	if err != nil {
		return
	}
	fmt.Println("device key:", e.Attestation.SymmetricKey.PrimaryKey)

	found, err := svc.GetEnrollment(ctx, "default", "DEVICE-01") // ids are case-insensitive
	if err != nil {
		return
	}
	svc.PutRegistration(ctx, "default", &model.Registration{DeviceRegistrationState: model.DeviceRegistrationState{
		RegistrationID: found.RegistrationID, Status: "assigned", AssignedHub: "hub1.azure-devices.net", DeviceID: "device-01"}})
}
