package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"portcullis.dev/portcullis/store"
)

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
