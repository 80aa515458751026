// Package storetest is the conformance suite every store.Store backend passes.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/store"
)

// Factory makes a new, empty store for one test, and a function that closes
// it and opens a store on the same data again (to check durability).
type Factory func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// base is a fixed time for records; tests never read the wall clock.
var base = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func record(jti, subject string, expires time.Time) *store.Record {
	return &store.Record{
		JTI:       jti,
		Kind:      store.KindServiceAccount,
		Subject:   subject,
		UID:       "uid-" + subject,
		Groups:    []string{"system:serviceaccounts", "system:serviceaccounts:ns"},
		Extra:     map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=" + jti}},
		Audiences: []string{"https://kubernetes.default.svc"},
		KeyID:     "kid-1",
		IssuedAt:  base.Add(123456789 * time.Nanosecond),
		ExpiresAt: expires,
		Binding:   &store.BoundObject{APIVersion: "v1", Kind: "Pod", Name: "p", UID: "pod-uid"},
	}
}

// RunTests runs the whole suite against the backend newStore makes.
func RunTests(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store, reopen func(t *testing.T) store.Store)
	}{
		{"RecordRoundTrip", testRecordRoundTrip},
		{"RecordDuplicate", testRecordDuplicate},
		{"RecordMissing", testRecordMissing},
		{"ListRecordsBySubject", testListRecordsBySubject},
		{"RevokeJTI", testRevokeJTI},
		{"RevokeJTIMissing", testRevokeJTIMissing},
		{"RevokeTwice", testRevokeTwice},
		{"RevokeSubject", testRevokeSubject},
		{"RevocationNameTaken", testRevocationNameTaken},
		{"PurgeExpired", testPurgeExpired},
		{"PurgeSubjectMarks", testPurgeSubjectMarks},
		{"Durable", testDurable},
		{"Concurrent", testConcurrent},
		{"UserTokenByName", testUserTokenByName},
		{"UserTokenNameTaken", testUserTokenNameTaken},
		{"CreateMaxHeld", testCreateMaxHeld},
		{"CreateMaxHeldConcurrent", testCreateMaxHeldConcurrent},
		{"UpdateRecord", testUpdateRecord},
		{"UpdateRecordAborts", testUpdateRecordAborts},
		{"UpdateRecordMovesExpiry", testUpdateRecordMovesExpiry},
		{"DeleteRecord", testDeleteRecord},
		{"ListRecordsByKind", testListRecordsByKind},
		{"Closed", testClosed},
		{"ListPages", testListPages},
		{"ListByKeyID", testListByKeyID},
		{"ListInvalidContinue", testListInvalidContinue},
		{"ListAfterDelete", testListAfterDelete},
		{"KeyRingEmpty", testKeyRingEmpty},
		{"KeyRingSwap", testKeyRingSwap},
		{"KeyRingConflict", testKeyRingConflict},
		{"KeyRingConcurrentSwaps", testKeyRingConcurrentSwaps},
		{"KeyRingDurable", testKeyRingDurable},
		{"KeyRingWatch", testKeyRingWatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, reopen := newStore(t)
			tc.run(t, s, reopen)
		})
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustCreate(t *testing.T, s store.Store, r *store.Record) {
	t.Helper()
	if err := s.CreateRecord(ctx(t), r, store.CreateOptions{}); err != nil {
		t.Fatalf("CreateRecord(%q): %v", r.JTI, err)
	}
}

func testRecordRoundTrip(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	want := record("a", "system:serviceaccount:ns:sa", base.Add(time.Hour))
	mustCreate(t, s, want)
	got, err := s.GetRecord(ctx(t), "a")
	if err != nil {
		t.Fatalf("GetRecord: %v", err)
	}
	assertRecord(t, got, want)
}

func assertRecord(t *testing.T, got, want *store.Record) {
	t.Helper()
	if got.JTI != want.JTI || got.Subject != want.Subject || got.UID != want.UID || got.Kind != want.Kind || got.KeyID != want.KeyID {
		t.Errorf("record = %+v, want %+v", got, want)
	}
	if !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("times = %v/%v, want %v/%v (full precision)", got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	if !slices.Equal(got.Groups, want.Groups) || !slices.Equal(got.Audiences, want.Audiences) {
		t.Errorf("groups/audiences = %v/%v, want %v/%v", got.Groups, got.Audiences, want.Groups, want.Audiences)
	}
	if fmt.Sprint(got.Extra) != fmt.Sprint(want.Extra) {
		t.Errorf("extra = %v, want %v", got.Extra, want.Extra)
	}
	if (got.Binding == nil) != (want.Binding == nil) || (got.Binding != nil && *got.Binding != *want.Binding) {
		t.Errorf("binding = %+v, want %+v", got.Binding, want.Binding)
	}
}

func testRecordDuplicate(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, record("a", "u", base.Add(time.Hour)))
	err := s.CreateRecord(ctx(t), record("a", "other", base.Add(time.Hour)), store.CreateOptions{})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateRecord = %v, want ErrExists", err)
	}
	got, err := s.GetRecord(ctx(t), "a")
	if err != nil || got.Subject != "u" {
		t.Fatalf("record after refused duplicate = %+v, %v; want the first one kept", got, err)
	}
}

func testRecordMissing(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	if _, err := s.GetRecord(ctx(t), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRecord(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetRevocation(ctx(t), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRevocation(missing) = %v, want ErrNotFound", err)
	}
}

func testListRecordsBySubject(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, record("a1", "alice", base.Add(time.Hour)))
	mustCreate(t, s, record("a2", "alice", base.Add(time.Hour)))
	mustCreate(t, s, record("b1", "bob", base.Add(time.Hour)))
	all, err := s.ListRecords(ctx(t), store.ListOptions{})
	if err != nil || len(all.Items) != 3 || all.Continue != "" {
		t.Fatalf("ListRecords() = %+v, %v; want 3 records on one page", all, err)
	}
	alice, err := s.ListRecords(ctx(t), store.ListOptions{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for _, r := range alice.Items {
		jtis = append(jtis, r.JTI)
	}
	slices.Sort(jtis)
	if !slices.Equal(jtis, []string{"a1", "a2"}) {
		t.Fatalf("ListRecords(alice) = %v, want [a1 a2]", jtis)
	}
}

func testDurable(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	mustCreate(t, s, record("a", "u", base.Add(time.Hour)))
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeJTI, "a", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx(t), revocation("r2", store.ScopeSubject, "u", base)); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t)
	a, err := s2.GetRecord(ctx(t), "a")
	if err != nil || a.RevokedAt == nil {
		t.Fatalf("after reopen: record %+v, %v; want it revoked", a, err)
	}
	revs, err := s2.ListRevocations(ctx(t))
	if err != nil || len(revs) != 2 {
		t.Fatalf("after reopen: %d revocations, %v; want 2", len(revs), err)
	}
}

func testConcurrent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			jti := fmt.Sprintf("c%d", i)
			if err := s.CreateRecord(ctx(t), record(jti, "u", base.Add(time.Hour)), store.CreateOptions{}); err != nil {
				errs <- err
				return
			}
			errs <- s.Revoke(ctx(t), revocation("r-"+jti, store.ScopeJTI, jti, base))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.ListRecords(ctx(t), store.ListOptions{Subject: "u"})
	if err != nil || len(recs.Items) != n {
		t.Fatalf("ListRecords = %+v, %v; want %d", recs, err, n)
	}
	for _, r := range recs.Items {
		if r.RevokedAt == nil {
			t.Fatalf("record %q lost its revocation", r.JTI)
		}
	}
}

func testClosed(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.GetRecord(ctx(t), "a"); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("GetRecord after Close = %v, want ErrClosed", err)
	}
	if err := s.Ready(ctx(t)); err == nil {
		t.Fatal("Ready after Close = nil, want an error")
	}
}

func userRecord(jti, name, owner string, expires time.Time) *store.Record {
	r := record(jti, owner, expires)
	r.Kind = store.KindUser
	r.Binding = nil
	r.User = &store.UserToken{Name: name, UID: "uid-" + name, Description: "d", TTL: expires.Sub(r.IssuedAt), LastUpdated: r.IssuedAt,
		Labels: map[string]string{"team": "a"}}
	return r
}

func testUserTokenByName(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	want := userRecord("j1", "token-abc", "alice", base.Add(time.Hour))
	mustCreate(t, s, want)
	got, err := s.GetRecordByName(ctx(t), "token-abc")
	if err != nil {
		t.Fatal(err)
	}
	assertRecord(t, got, want)
	if got.User == nil || got.User.Name != "token-abc" || got.User.Labels["team"] != "a" || got.User.TTL != want.User.TTL {
		t.Fatalf("user token = %+v", got.User)
	}
	if _, err := s.GetRecordByName(ctx(t), "token-none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRecordByName(missing) = %v, want ErrNotFound", err)
	}
	s2 := reopen(t)
	if _, err := s2.GetRecordByName(ctx(t), "token-abc"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}

func testUserTokenNameTaken(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("j1", "token-abc", "alice", base.Add(time.Hour)))
	err := s.CreateRecord(ctx(t), userRecord("j2", "token-abc", "bob", base.Add(time.Hour)), store.CreateOptions{})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second token with the same name = %v, want ErrExists", err)
	}
	if _, err := s.GetRecord(ctx(t), "j2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused record was stored: %v", err)
	}
}

// testCreateMaxHeld: MaxHeld counts the records of the new record's kind and
// subject, and nothing else; a deletion makes room again.
func testCreateMaxHeld(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	limit := store.CreateOptions{MaxHeld: 2}
	for i := range 2 {
		if err := s.CreateRecord(ctx(t), userRecord(fmt.Sprintf("a%d", i), fmt.Sprintf("token-a%d", i), "alice", base.Add(time.Hour)), limit); err != nil {
			t.Fatalf("create %d of 2: %v", i+1, err)
		}
	}
	err := s.CreateRecord(ctx(t), userRecord("a2", "token-a2", "alice", base.Add(time.Hour)), limit)
	if !errors.Is(err, store.ErrLimit) {
		t.Fatalf("third create with MaxHeld 2 = %v, want ErrLimit", err)
	}
	if _, err := s.GetRecordByName(ctx(t), "token-a2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused record's name was stored: %v", err)
	}
	// Another subject, another kind of the same subject, and a subject whose
	// name extends alice's are counted apart.
	mustCreateWith(t, s, userRecord("b0", "token-b0", "bob", base.Add(time.Hour)), limit)
	mustCreateWith(t, s, userRecord("b1", "token-b1", "alice2", base.Add(time.Hour)), limit)
	mustCreateWith(t, s, record("sa0", "alice", base.Add(time.Hour)), limit)
	// Taken names and jtis are still ErrExists, not ErrLimit, below the bound.
	if err := s.CreateRecord(ctx(t), userRecord("b2", "token-b0", "bob", base.Add(time.Hour)), limit); !errors.Is(err, store.ErrExists) {
		t.Fatalf("taken name under MaxHeld = %v, want ErrExists", err)
	}
	if err := s.DeleteRecord(ctx(t), "a0"); err != nil {
		t.Fatal(err)
	}
	mustCreateWith(t, s, userRecord("a3", "token-a3", "alice", base.Add(time.Hour)), limit)
	if err := s.CreateRecord(ctx(t), userRecord("a4", "token-a4", "alice", base.Add(time.Hour)), limit); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("create over the bound after a delete and a create = %v, want ErrLimit", err)
	}
}

// testCreateMaxHeldConcurrent: of concurrent creates for one subject,
// exactly as many pass as the bound allows.
func testCreateMaxHeldConcurrent(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	const tries, bound = 24, 5
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	for i := range tries {
		wg.Go(func() {
			errs <- s.CreateRecord(ctx(t), userRecord(fmt.Sprintf("c%d", i), fmt.Sprintf("token-c%d", i), "carol", base.Add(time.Hour)), store.CreateOptions{MaxHeld: bound})
		})
	}
	wg.Wait()
	close(errs)
	created := 0
	for err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrLimit):
			t.Errorf("concurrent create: %v, want nil or ErrLimit", err)
		}
	}
	recs, err := s.ListRecords(ctx(t), store.ListOptions{Subject: "carol", Kind: store.KindUser})
	if err != nil {
		t.Fatal(err)
	}
	if created != bound || len(recs.Items) != bound {
		t.Fatalf("%d of %d concurrent creates succeeded and %d records are stored, with MaxHeld %d", created, tries, len(recs.Items), bound)
	}
}

func mustCreateWith(t *testing.T, s store.Store, r *store.Record, opts store.CreateOptions) {
	t.Helper()
	if err := s.CreateRecord(ctx(t), r, opts); err != nil {
		t.Fatalf("CreateRecord(%q, %+v): %v", r.JTI, opts, err)
	}
}

func testUpdateRecord(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("j1", "token-abc", "alice", base.Add(time.Hour)))
	got, err := s.UpdateRecord(ctx(t), "j1", func(r *store.Record) error {
		r.User.Description = "new"
		r.User.Disabled = true
		return nil
	})
	if err != nil || got.User.Description != "new" || !got.User.Disabled {
		t.Fatalf("UpdateRecord = %+v, %v", got, err)
	}
	again, _ := s.GetRecord(ctx(t), "j1")
	if again.User.Description != "new" || !again.User.Disabled {
		t.Fatalf("update not stored: %+v", again.User)
	}
	if _, err := s.UpdateRecord(ctx(t), "missing", func(*store.Record) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateRecord(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateRecord(ctx(t), "j1", func(r *store.Record) error { r.User.Name = "token-other"; return nil }); err == nil {
		t.Fatal("an update that renames the token was accepted")
	}
}

func testUpdateRecordAborts(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("j1", "token-abc", "alice", base.Add(time.Hour)))
	boom := errors.New("refused")
	_, err := s.UpdateRecord(ctx(t), "j1", func(r *store.Record) error {
		r.User.Description = "half-done"
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateRecord = %v, want the update's own error", err)
	}
	if got, _ := s.GetRecord(ctx(t), "j1"); got.User.Description != "d" {
		t.Fatalf("aborted update was stored: %q", got.User.Description)
	}
}

func testUpdateRecordMovesExpiry(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("j1", "token-abc", "alice", base.Add(time.Hour)))
	if _, err := s.UpdateRecord(ctx(t), "j1", func(r *store.Record) error {
		r.ExpiresAt = base.Add(time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeExpired(ctx(t), base.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("PurgeExpired after shortening = %d, %v; want the record purged", n, err)
	}
	if _, err := s.GetRecordByName(ctx(t), "token-abc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("purged token still found by name: %v", err)
	}
	// The name is free again.
	mustCreate(t, s, userRecord("j2", "token-abc", "alice", base.Add(time.Hour)))
}

func testDeleteRecord(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("j1", "token-abc", "alice", base.Add(time.Hour)))
	if err := s.DeleteRecord(ctx(t), "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(ctx(t), "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted record: %v", err)
	}
	if _, err := s.GetRecordByName(ctx(t), "token-abc"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted record by name: %v", err)
	}
	if err := s.DeleteRecord(ctx(t), "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete = %v, want ErrNotFound", err)
	}
	if n, err := s.PurgeExpired(ctx(t), base.Add(2*time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge after delete = %d, %v", n, err)
	}
}

func testListRecordsByKind(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("u1", "token-a", "alice", base.Add(time.Hour)))
	mustCreate(t, s, record("s1", "alice", base.Add(time.Hour)))
	got, err := s.ListRecords(ctx(t), store.ListOptions{Subject: "alice", Kind: store.KindUser})
	if err != nil || len(got.Items) != 1 || got.Items[0].JTI != "u1" {
		t.Fatalf("ListRecords(alice, user) = %+v, %v", got, err)
	}
}
