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
		{"UpdateRecord", testUpdateRecord},
		{"UpdateRecordAborts", testUpdateRecordAborts},
		{"UpdateRecordMovesExpiry", testUpdateRecordMovesExpiry},
		{"DeleteRecord", testDeleteRecord},
		{"ListRecordsByKind", testListRecordsByKind},
		{"Closed", testClosed},
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
	if err := s.CreateRecord(ctx(t), r); err != nil {
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
	err := s.CreateRecord(ctx(t), record("a", "other", base.Add(time.Hour)))
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
	if err != nil || len(all) != 3 {
		t.Fatalf("ListRecords() = %d records, %v; want 3", len(all), err)
	}
	alice, err := s.ListRecords(ctx(t), store.ListOptions{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var jtis []string
	for _, r := range alice {
		jtis = append(jtis, r.JTI)
	}
	slices.Sort(jtis)
	if !slices.Equal(jtis, []string{"a1", "a2"}) {
		t.Fatalf("ListRecords(alice) = %v, want [a1 a2]", jtis)
	}
}

func revocation(name string, scope store.Scope, target string, at time.Time) *store.Revocation {
	return &store.Revocation{Name: name, UID: "uid-" + name, Scope: scope, Target: target, Reason: "test", RevokedBy: "admin", Created: at}
}

func testRevokeJTI(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, record("a", "u", base.Add(time.Hour)))
	mustCreate(t, s, record("b", "u", base.Add(time.Hour)))
	at := base.Add(time.Minute)
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeJTI, "a", at)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	a, err := s.GetRecord(ctx(t), "a")
	if err != nil {
		t.Fatal(err)
	}
	if a.RevokedAt == nil || !a.RevokedAt.Equal(at) {
		t.Fatalf("revoked record RevokedAt = %v, want %v", a.RevokedAt, at)
	}
	if b, _ := s.GetRecord(ctx(t), "b"); b == nil || b.RevokedAt != nil {
		t.Fatalf("other record was revoked too: %+v", b)
	}
	rev, err := s.GetRevocation(ctx(t), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if rev.Scope != store.ScopeJTI || rev.Target != "a" || rev.ExpiresAt == nil || !rev.ExpiresAt.Equal(base.Add(time.Hour)) {
		t.Fatalf("revocation = %+v, want jti a expiring with its record", rev)
	}
}

func testRevokeJTIMissing(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	err := s.Revoke(ctx(t), revocation("r1", store.ScopeJTI, "nope", base))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Revoke(missing jti) = %v, want ErrNotFound", err)
	}
	if revs, _ := s.ListRevocations(ctx(t)); len(revs) != 0 {
		t.Fatalf("a refused revocation was stored: %+v", revs)
	}
}

func testRevokeTwice(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, record("a", "u", base.Add(time.Hour)))
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeJTI, "a", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx(t), revocation("r2", store.ScopeJTI, "a", base.Add(time.Minute))); err != nil {
		t.Fatalf("second revocation of the same jti: %v", err)
	}
	a, _ := s.GetRecord(ctx(t), "a")
	if a == nil || a.RevokedAt == nil || !a.RevokedAt.Equal(base) {
		t.Fatalf("RevokedAt = %v, want the first revocation's time %v", a.RevokedAt, base)
	}
}

func testRevokeSubject(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeSubject, "system:serviceaccount:ns:sa", base)); err != nil {
		t.Fatalf("Revoke(subject) without records: %v", err)
	}
	revs, err := s.ListRevocations(ctx(t))
	if err != nil || len(revs) != 1 {
		t.Fatalf("ListRevocations = %v, %v; want one", revs, err)
	}
	if got := revs[0]; got.Scope != store.ScopeSubject || got.Target != "system:serviceaccount:ns:sa" || !got.Created.Equal(base) || got.ExpiresAt != nil {
		t.Fatalf("revocation = %+v", got)
	}
}

func testRevocationNameTaken(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeSubject, "a", base)); err != nil {
		t.Fatal(err)
	}
	err := s.Revoke(ctx(t), revocation("r1", store.ScopeSubject, "b", base))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("Revoke(taken name) = %v, want ErrExists", err)
	}
}

func testPurgeExpired(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, record("old", "u", base.Add(time.Minute)))
	mustCreate(t, s, record("new", "u", base.Add(time.Hour)))
	if err := s.Revoke(ctx(t), revocation("r-old", store.ScopeJTI, "old", base)); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx(t), revocation("r-subject", store.ScopeSubject, "u", base)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PurgeExpired(ctx(t), base.Add(2*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v; want 1", n, err)
	}
	if _, err := s.GetRecord(ctx(t), "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired record still there: %v", err)
	}
	if _, err := s.GetRecord(ctx(t), "new"); err != nil {
		t.Fatalf("live record purged: %v", err)
	}
	if _, err := s.GetRevocation(ctx(t), "r-old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revocation of an expired record kept: %v", err)
	}
	if _, err := s.GetRevocation(ctx(t), "r-subject"); err != nil {
		t.Fatalf("subject revocation purged: %v", err)
	}
	if n, err := s.PurgeExpired(ctx(t), base.Add(2*time.Minute)); err != nil || n != 0 {
		t.Fatalf("second PurgeExpired = %d, %v; want 0", n, err)
	}
}

// testPurgeSubjectMarks: a subject keeps only its newest mark (an older
// one refuses nothing the newer does not), and a mark with an expiry goes
// once it passed (no token minted before it can still be alive).
func testPurgeSubjectMarks(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	expiring := func(name, subject string, at, expires time.Time) *store.Revocation {
		r := revocation(name, store.ScopeSubject, subject, at)
		r.ExpiresAt = &expires
		return r
	}
	for _, r := range []*store.Revocation{
		revocation("vm-1", store.ScopeSubject, "vm", base),
		revocation("vm-2", store.ScopeSubject, "vm", base.Add(time.Minute)),
		revocation("vm-3", store.ScopeSubject, "vm", base.Add(2*time.Minute)),
		revocation("other", store.ScopeSubject, "other", base),
		expiring("short", "short-lived", base, base.Add(time.Hour)),
		expiring("long", "long-lived", base, base.Add(48*time.Hour)),
	} {
		if err := s.Revoke(ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PurgeExpired(ctx(t), base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	revs, err := s.ListRevocations(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range revs {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	if want := []string{"long", "other", "vm-3"}; !slices.Equal(names, want) {
		t.Fatalf("revocations after purge = %v, want %v", names, want)
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
			if err := s.CreateRecord(ctx(t), record(jti, "u", base.Add(time.Hour))); err != nil {
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
	if err != nil || len(recs) != n {
		t.Fatalf("ListRecords = %d, %v; want %d", len(recs), err, n)
	}
	for _, r := range recs {
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
	err := s.CreateRecord(ctx(t), userRecord("j2", "token-abc", "bob", base.Add(time.Hour)))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second token with the same name = %v, want ErrExists", err)
	}
	if _, err := s.GetRecord(ctx(t), "j2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused record was stored: %v", err)
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
	if err != nil || len(got) != 1 || got[0].JTI != "u1" {
		t.Fatalf("ListRecords(alice, user) = %v, %v", got, err)
	}
}

// RunWatchTests checks a store's Watch: established first, then every
// revocation, record change and deletion, never a record creation, and
// progress while idle.
func RunWatchTests(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	w, ok := s.(store.Watcher)
	if !ok {
		t.Fatalf("%T does not implement store.Watcher", s)
	}
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	events, err := w.Watch(wctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func(skipProgress bool) store.Event {
		t.Helper()
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatal("watch closed")
				}
				if skipProgress && e.Type == store.EventProgress {
					continue
				}
				return e
			case <-time.After(10 * time.Second):
				t.Fatal("no event within 10s")
			}
		}
	}
	if e := next(true); e.Type != store.EventSynced {
		t.Fatalf("first event %v, want EventSynced", e.Type)
	}
	mustCreate(t, s, userRecord("j1", "token-w", "alice", base.Add(time.Hour)))
	if err := s.Revoke(ctx(t), revocation("r1", store.ScopeSubject, "bob", base)); err != nil {
		t.Fatal(err)
	}
	if e := next(true); e.Type != store.EventRevocation || e.Revocation.Name != "r1" || e.Revocation.Target != "bob" {
		t.Fatalf("after a revocation: %+v (a record creation must not be reported)", e)
	}
	if _, err := s.UpdateRecord(ctx(t), "j1", func(r *store.Record) error { r.User.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if e := next(true); e.Type != store.EventRecordChanged || e.JTI != "j1" || e.Record == nil || !e.Record.User.Disabled {
		t.Fatalf("after an update: %+v", e)
	}
	if err := s.DeleteRecord(ctx(t), "j1"); err != nil {
		t.Fatal(err)
	}
	if e := next(true); e.Type != store.EventRecordDeleted || e.JTI != "j1" {
		t.Fatalf("after a delete: %+v", e)
	}
	if e := next(false); e.Type != store.EventProgress {
		t.Fatalf("idle: %+v, want EventProgress", e)
	}
	cancel()
	for range events {
	}
}
