package attest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendps/opendps/internal/attest"
	"github.com/opendps/opendps/internal/model"
)

// A device of a symmetric-key enrollment group registers with a token
// signed by its derived key (vectors of spec/dps-protocol.md §3.1).
func ExampleAttestor_SymmetricKey() {
	src := &attest.MemEnrollments{GroupList: []*model.EnrollmentGroup{{
		EnrollmentGroupID: "contoso",
		EnrollmentCommon: model.EnrollmentCommon{Attestation: &model.AttestationMechanism{
			Type:         model.AttestationSymmetricKey,
			SymmetricKey: &model.SymmetricKeyAttestation{PrimaryKey: "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="},
		}},
	}}}
	a := &attest.Attestor{Cache: attest.NewKeyCache(0)}
	m, err := a.SymmetricKey(context.Background(), attest.SASRequest{
		Enrollments:    src,
		IDScope:        "0ne00111111",
		RegistrationID: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
		Token:          "SharedAccessSignature sr=0ne00111111%2Fregistrations%2Fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration",
		Now:            time.Unix(1700000000-60, 0),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.EnrollmentGroupID(), m.KeyUsed, m.Disabled)

	// The same token a day later.
	_, err = a.SymmetricKey(context.Background(), attest.SASRequest{
		Enrollments: src, IDScope: "0ne00111111", RegistrationID: "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
		Token: "SharedAccessSignature sr=0ne00111111%2Fregistrations%2Fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration",
		Now:   time.Unix(1700000000+86400, 0),
	})
	var refusal *attest.Error
	if errors.As(err, &refusal) {
		fmt.Println(refusal.Code, refusal.Message)
	}
	// Output:
	// contoso primary false
	// 401000 token expired at 2023-11-14T22:13:20Z
}
