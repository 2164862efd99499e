package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/netutil"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	c, _ := netutil.FreeLoopbackAddr()
	p, _ := netutil.FreeLoopbackAddr()
	s, err := Open(context.Background(), Config{DataDir: dir, Name: "n1", Region: "westeurope",
		ClientURL: "http://" + c, PeerURL: "http://" + p})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newInstance(t *testing.T, s *Store, name, scope string) {
	t.Helper()
	dir := model.DirEntry{Name: name, IDScope: scope, Primary: "westeurope", Role: model.RolePrimary, Epoch: 1}
	if err := s.CreateInstance(context.Background(), dir, &model.Instance{Name: name, IDScope: scope}); err != nil {
		t.Fatal(err)
	}
}

func TestInstanceLifecycleAndRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	newInstance(t, s, "a", "0ne0000000A")
	if err := s.CreateInstance(ctx, model.DirEntry{Name: "b", IDScope: "0NE0000000a"}, &model.Instance{}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate scope: err = %v, want ErrExists", err)
	}
	err := s.Update(ctx, "a", func(tx *Tx) error {
		return tx.Put(Key("a", KindEnrollment, "Dev1"), map[string]string{"registrationId": "Dev1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTest(t, dir)
	defer s.Close()
	if name, err := s.ResolveScope(ctx, "0NE0000000a"); err != nil || name != "a" {
		t.Fatalf("ResolveScope = %q, %v", name, err)
	}
	var got map[string]string
	if ok, err := s.Get(ctx, Key("a", KindEnrollment, "dev1"), &got); !ok || err != nil || got["registrationId"] != "Dev1" {
		t.Fatalf("after restart: %v %v %v", ok, err, got)
	}
	if err := s.DeleteInstance(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, InstancePrefix("a")); n != 0 {
		t.Errorf("%d keys left after delete", n)
	}
	if _, err := s.ResolveScope(ctx, "0ne0000000a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("scope after delete: %v", err)
	}
}

func TestUpdateIsFenced(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "a", "0ne0000000A")
	// A failover elsewhere demotes the instance here (epoch 2, secondary).
	b := (`{"name":"a","idScope":"0ne0000000A","primary":"northeurope","epoch":2,"drEnabled":false,"role":"secondary"}`)
	if _, err := s.cli.Put(ctx, DirKey("a"), b); err != nil {
		t.Fatal(err)
	}
	err := s.Update(ctx, "a", func(tx *Tx) error { return tx.Put(Key("a", KindEnrollment, "x"), 1) })
	if !errors.Is(err, ErrFenced) {
		t.Fatalf("Update on demoted instance: err = %v, want ErrFenced", err)
	}
	if n, _ := s.Count(ctx, KindPrefix("a", KindEnrollment)); n != 0 {
		t.Errorf("fenced write landed")
	}
}

func TestUpdateConflictRetries(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "a", "0ne0000000A")
	key := Key("a", KindEnrollment, "counter")
	// A concurrent writer changes the key between read and commit once;
	// Update must retry and not lose either increment.
	interfered := false
	err := s.Update(ctx, "a", func(tx *Tx) error {
		var n int
		tx.Get(key, &n)
		if !interfered {
			interfered = true
			s.cli.Put(ctx, key, "10")
		}
		return tx.Put(key, n+1)
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	s.Get(ctx, key, &n)
	if n != 11 {
		t.Errorf("counter = %d, want 11", n)
	}
}

func TestListPages(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "a", "0ne0000000A")
	s.Update(ctx, "a", func(tx *Tx) error {
		for i := range 25 {
			tx.Put(Key("a", KindEnrollment, fmt.Sprintf("d%02d", i)), i)
		}
		return nil
	})
	var all []string
	after := ""
	pages := 0
	for {
		p, err := s.List(ctx, KindPrefix("a", KindEnrollment), after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range p.Values {
			all = append(all, string(v))
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(all) != 25 || pages != 3 {
		t.Errorf("got %d values in %d pages, want 25 in 3", len(all), pages)
	}
}

// TestGroupCommitKeepsEachTransactionsChecks runs many concurrent
// transactions: distinct keys all land, and read-modify-writes of one
// shared counter lose no increment although they are merged into batches.
func TestGroupCommitKeepsEachTransactionsChecks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	newInstance(t, s, "a", "0ne0000000A")
	counter := Key("a", KindEnrollment, "counter")
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 200 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, "a", func(tx *Tx) error { return tx.Put(Key("a", KindRegistration, fmt.Sprint(i)), i) })
		}()
		go func() {
			defer wg.Done()
			errs <- s.Update(ctx, "a", func(tx *Tx) error {
				var n int
				if _, err := tx.Get(counter, &n); err != nil {
					return err
				}
				return tx.Put(counter, n+1)
			})
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++ // ErrConflict after maxAttempts is allowed, but must not lose counts
		}
	}
	if n, _ := s.Count(ctx, KindPrefix("a", KindRegistration)); n != 200 {
		t.Errorf("%d registrations written, want 200", n)
	}
	var n int
	s.Get(ctx, counter, &n)
	if n+failed < 200 || n > 200 {
		t.Errorf("counter = %d with %d failed updates; want 200 increments accounted for", n, failed)
	}
}

// TestEachAndDelete: Each visits every value under a prefix across pages,
// in key order, and stops at fn's error; Delete reports whether the key
// existed.
func TestEachAndDelete(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	const n = 1203 // three pages of 500
	for i := range n {
		if err := s.Put(ctx, fmt.Sprintf("/t/each/%05d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := s.Each(ctx, "/t/each/", func(v []byte) error { got = append(got, string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n || got[0] != "0" || got[n-1] != fmt.Sprint(n-1) || got[500] != "500" {
		t.Fatalf("Each visited %d values (first %q, last %q)", len(got), got[0], got[len(got)-1])
	}
	stop := errors.New("stop")
	visits := 0
	if err := s.Each(ctx, "/t/each/", func([]byte) error { visits++; return stop }); !errors.Is(err, stop) || visits != 1 {
		t.Errorf("Each after fn's error: err %v after %d visits", err, visits)
	}
	if ok, err := s.Delete(ctx, "/t/each/00000"); err != nil || !ok {
		t.Errorf("Delete of an existing key = %v, %v", ok, err)
	}
	if ok, err := s.Delete(ctx, "/t/each/00000"); err != nil || ok {
		t.Errorf("Delete of a missing key = %v, %v", ok, err)
	}
}
