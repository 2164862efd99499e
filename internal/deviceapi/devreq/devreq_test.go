package devreq_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/devreq"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

func code(err error) int {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"scope", devreq.ValidateScope("0ne0045B3C6"), 0},
		{"scope upper prefix", devreq.ValidateScope("0NE00000001"), 0},
		{"scope without hex", devreq.ValidateScope("0ne"), apierr.CodeBadRequest},
		{"scope not hex", devreq.ValidateScope("0ne0000000g"), apierr.CodeBadRequest},
		{"scope too long", devreq.ValidateScope("0ne" + strings.Repeat("0", 33)), apierr.CodeBadRequest},
		{"registration id", devreq.ValidateRegistrationID("sn-007:a.b_c-"), 0},
		{"registration id empty", devreq.ValidateRegistrationID(""), apierr.CodeInvalidRegistration},
		{"registration id space", devreq.ValidateRegistrationID("a b"), apierr.CodeInvalidRegistration},
		{"registration id ends with dot", devreq.ValidateRegistrationID("a."), apierr.CodeInvalidRegistration},
		{"registration id 129", devreq.ValidateRegistrationID(strings.Repeat("a", 129)), apierr.CodeInvalidRegistration},
		{"operation id", devreq.ValidateOperationID("4.81be54c71574a264.bdb6dd6b-4895"), 0},
		{"operation id with &", devreq.ValidateOperationID("a&b"), apierr.CodeBadArgument},
		{"operation id empty", devreq.ValidateOperationID(""), apierr.CodeBadArgument},
		{"api-version", devreq.CheckAPIVersion("2019-03-31"), 0},
		{"api-version preview", devreq.CheckAPIVersion("2025-07-01-preview"), 0},
		{"api-version empty", devreq.CheckAPIVersion(""), 0},
		{"api-version bad", devreq.CheckAPIVersion("2019"), apierr.CodeInvalidAPIVersion},
		{"api-version query", devreq.CheckAPIVersionQuery("API-Version=bad&x=1"), apierr.CodeInvalidAPIVersion},
	}
	for _, tt := range tests {
		if got := code(tt.err); got != tt.want {
			t.Errorf("%s: code %d (%v), want %d", tt.name, got, tt.err, tt.want)
		}
	}
}

func TestDecodeRegistration(t *testing.T) {
	tests := []struct {
		body     string
		wantNil  bool
		wantCode int
	}{
		{"", true, 0},
		{" \n", true, 0},
		{"null", true, 0},
		{`{"registrationId":"DEV1","payload":{"a":1}}`, false, 0},
		{`{"payload":null,"registrationId":"dev1"}`, false, 0},
		{`{"registrationId":"dev2"}`, false, apierr.CodeBadArgument},
		{`{"registrationId":5}`, false, apierr.CodeBadArgument},
		{`{`, false, apierr.CodeBadArgument},
		{`{"payload":"` + strings.Repeat("x", 100) + `"}`, false, apierr.CodePayloadTooLarge},
	}
	for _, tt := range tests {
		reg, err := devreq.DecodeRegistration([]byte(tt.body), "dev1", 64)
		if got := code(err); got != tt.wantCode {
			t.Errorf("%q: code %d (%v), want %d", tt.body, got, err, tt.wantCode)
		}
		if err == nil && (reg == nil) != tt.wantNil {
			t.Errorf("%q: body %+v, want nil %v", tt.body, reg, tt.wantNil)
		}
	}
}

func TestNormalize(t *testing.T) {
	st := func(s string, rs *model.DeviceRegistrationResult) *engine.Result {
		return &engine.Result{Status: &model.RegistrationOperationStatus{OperationID: "op", Status: s, RegistrationState: rs}}
	}
	out, retry, err := devreq.Normalize(st("assigning", nil), "dev1", nil)
	if err != nil || retry != devreq.DefaultRetryAfter || out.RegistrationState == nil || out.RegistrationState.RegistrationID != "dev1" {
		t.Errorf("assigning: %+v %d %v", out, retry, err)
	}
	in := st("unassigned", &model.DeviceRegistrationResult{RegistrationID: "dev1", Status: "unassigned"})
	out, _, err = devreq.Normalize(in, "dev1", nil)
	if err != nil || out.Status != "assigning" || out.RegistrationState.Status != "assigning" {
		t.Errorf("unassigned: %+v %v", out, err)
	}
	if in.Status.Status != "unassigned" || in.Status.RegistrationState.Status != "unassigned" {
		t.Error("Normalize modified the engine's answer")
	}
	out, retry, err = devreq.Normalize(st("assigned", nil), "dev1", nil)
	if err != nil || retry != 0 || out.RegistrationState != nil {
		t.Errorf("assigned: %+v %d %v", out, retry, err)
	}
	if _, _, err := devreq.Normalize(st("weird", nil), "dev1", nil); code(err) != apierr.CodeInternal {
		t.Errorf("unknown status: %v, want 500", err)
	}
	if _, _, err := devreq.Normalize(nil, "dev1", nil); !errors.Is(err, devreq.ErrNoStatus) {
		t.Errorf("nil result: %v", err)
	}
}
