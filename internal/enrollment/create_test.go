package enrollment_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
)

// TestCreateNeverReplaces: of concurrent creates of one id exactly one
// wins and the others get ErrExists; the stored record is the winner's.
func TestCreateNeverReplaces(t *testing.T) {
	s, in := setup(t)
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := symEnrollment("dev-race")
			e.DeviceID = "writer-" + string(rune('a'+i))
			_, errs[i] = s.CreateEnrollment(ctx, in.Name, e)
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("creates %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, enrollment.ErrExists):
			t.Errorf("create %d: err = %v, want ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no create succeeded")
	}
	got, err := s.GetEnrollment(ctx, in.Name, "dev-race")
	if err != nil || got.DeviceID != "writer-"+string(rune('a'+winner)) {
		t.Errorf("stored %+v (%v), want the winner's record", got, err)
	}

	g := &model.EnrollmentGroup{EnrollmentGroupID: "grp-race", EnrollmentCommon: model.EnrollmentCommon{
		Attestation: &model.AttestationMechanism{Type: "symmetricKey"}}}
	if _, err := s.CreateGroup(ctx, in.Name, g); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGroup(ctx, in.Name, g); !errors.Is(err, enrollment.ErrExists) {
		t.Errorf("second CreateGroup: err = %v, want ErrExists", err)
	}
}
