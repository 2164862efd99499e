package store

import (
	"context"
	"errors"
	"testing"
)

// TestReadsAreFenced: once the directory entry says another region is
// primary, reads of the instance's records here fail with ErrFenced, even
// though this node had the old entry cached and still holds the records.
func TestReadsAreFenced(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "a", "0ne0000000A")
	key := Key("a", KindEnrollment, "x")
	if err := s.Update(ctx, "a", func(tx *Tx) error { return tx.Put(key, 1) }); err != nil {
		t.Fatal(err)
	}
	var v int
	if ok, err := s.GetFenced(ctx, "a", key, &v); err != nil || !ok || v != 1 {
		t.Fatalf("GetFenced as primary = %v, %v, %d; want the record", ok, err, v)
	}
	if p, err := s.ListFenced(ctx, "a", KindPrefix("a", KindEnrollment), "", 10); err != nil || len(p.Values) != 1 {
		t.Fatalf("ListFenced as primary = %d values, %v", len(p.Values), err)
	}
	// Fenced for a planned failover (the cached entry still says primary).
	fenced := `{"name":"a","idScope":"0ne0000000A","primary":"westeurope","epoch":1,"role":"fenced"}`
	if _, err := s.cli.Put(ctx, DirKey("a"), fenced); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFenced(ctx, "a", key, &v); !errors.Is(err, ErrFenced) {
		t.Errorf("GetFenced when fenced: err = %v, want ErrFenced", err)
	}
	if _, err := s.ListFenced(ctx, "a", KindPrefix("a", KindEnrollment), "", 10); !errors.Is(err, ErrFenced) {
		t.Errorf("ListFenced when fenced: err = %v, want ErrFenced", err)
	}
	// Unfenced again: reads work (the entry is read anew).
	primary := `{"name":"a","idScope":"0ne0000000A","primary":"westeurope","epoch":1,"role":"primary"}`
	if _, err := s.cli.Put(ctx, DirKey("a"), primary); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.GetFenced(ctx, "a", key, &v); err != nil || !ok {
		t.Errorf("GetFenced after unfence = %v, %v", ok, err)
	}
	// Demoted by a failover elsewhere.
	demoted := `{"name":"a","idScope":"0ne0000000A","primary":"northeurope","epoch":2,"role":"secondary"}`
	if _, err := s.cli.Put(ctx, DirKey("a"), demoted); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFenced(ctx, "a", key, &v); !errors.Is(err, ErrFenced) {
		t.Errorf("GetFenced when demoted: err = %v, want ErrFenced", err)
	}
	// Plain reads (replication, status) still see the copy.
	if ok, err := s.Get(ctx, key, &v); err != nil || !ok {
		t.Errorf("Get of the copy = %v, %v", ok, err)
	}
}

// TestGetManyFenced: several keys in one fenced read, in order, nil for a
// missing one; refused once fenced.
func TestGetManyFenced(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "m", "0ne0000000M")
	a, b := Key("m", KindRegistration, "a"), Key("m", KindRegistration, "b")
	if err := s.Update(ctx, "m", func(tx *Tx) error {
		if err := tx.Put(a, 1); err != nil {
			return err
		}
		return tx.Put(b, 2)
	}); err != nil {
		t.Fatal(err)
	}
	vals, err := s.GetManyFenced(ctx, "m", []string{b, Key("m", KindRegistration, "none"), a})
	if err != nil || len(vals) != 3 || string(vals[0]) != "2" || vals[1] != nil || string(vals[2]) != "1" {
		t.Fatalf("GetManyFenced = %q, %v; want [2 nil 1]", vals, err)
	}
	fenced := `{"name":"m","idScope":"0ne0000000M","primary":"westeurope","epoch":1,"role":"fenced"}`
	if _, err := s.cli.Put(ctx, DirKey("m"), fenced); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetManyFenced(ctx, "m", []string{a}); !errors.Is(err, ErrFenced) {
		t.Errorf("GetManyFenced when fenced: err = %v, want ErrFenced", err)
	}
}
