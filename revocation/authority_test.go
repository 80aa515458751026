package revocation

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"portcullis.dev/portcullis/store/bolt/bolttest"

	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
)

func newAuthority(t *testing.T, maxEntries int64) (*Authority, *bolt.Store, *testingclock.FakeClock) {
	t.Helper()
	return newAuthorityWith(t, Options{MaxEntries: maxEntries})
}

// newAuthorityWith is a loaded authority over a new bbolt store with opts and a
// fake clock.
func newAuthorityWith(t *testing.T, opts Options) (*Authority, *bolt.Store, *testingclock.FakeClock) {
	t.Helper()
	st := bolttest.Open(t)
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	opts.Clock = clk
	c, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c, st, clk
}

func TestRevocationIndexIsExactEvenWhenRecordIsCached(t *testing.T) {
	c, _, clk := newAuthority(t, 100)
	ctx := context.Background()
	rec := &store.Record{JTI: "j1", Subject: "u", IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
	if err := c.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	cached, err := c.Record(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, &store.Revocation{Name: "r", Scope: store.ScopeJTI, Target: "j1", Created: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	// The copy fetched before the revocation says nothing of it; the index does.
	if _, revoked, err := c.Revoked(cached); err != nil || !revoked {
		t.Fatalf("Revoked(stale copy) = %v, %v; want revoked", revoked, err)
	}
}

func TestPurgeDropsExpiredIndexEntries(t *testing.T) {
	c, _, clk := newAuthority(t, 100)
	ctx := context.Background()
	rec := &store.Record{JTI: "j1", Subject: "u", IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Minute)}
	if err := c.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, &store.Revocation{Name: "r", Scope: store.ScopeJTI, Target: "j1", Created: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	clk.Step(2 * time.Minute)
	if n, err := c.PurgeExpired(ctx); err != nil || n != 1 {
		t.Fatalf("PurgeExpired = %d, %v", n, err)
	}
	c.mu.RLock()
	left := len(c.revoked)
	c.mu.RUnlock()
	if left != 0 {
		t.Fatalf("%d index entries left for a purged record", left)
	}
	c.records.Del("j1")
	if _, err := c.Record(ctx, "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("purged record: %v", err)
	}
}

func TestUpdateAndDeleteWinOverCachedCopies(t *testing.T) {
	c, _, clk := newAuthority(t, 100)
	ctx := context.Background()
	rec := &store.Record{JTI: "j1", Kind: store.KindUser, Subject: "u", IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour),
		User: &store.UserToken{Name: "token-a"}}
	if err := c.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	stale, _ := c.Record(ctx, "j1")
	if _, err := c.UpdateRecord(ctx, "j1", func(r *store.Record) error { r.User.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	// A copy fetched before the update lands in ristretto after it.
	c.records.Set("j1", stale, time.Minute)
	c.Wait()
	if got, err := c.Record(ctx, "j1"); err != nil || !got.User.Disabled {
		t.Fatalf("Record after disable = %+v, %v; want the disabled record", got, err)
	}
	if err := c.DeleteRecord(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	c.records.Set("j1", stale, time.Minute)
	c.Wait()
	if _, err := c.Record(ctx, "j1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Record after delete = %v, want ErrNotFound", err)
	}
}

func TestTouchWritesLastUsedAtAtMostOncePerInterval(t *testing.T) {
	c, st, clk := newAuthority(t, 100)
	ctx := context.Background()
	rec := &store.Record{JTI: "j1", Kind: store.KindUser, Subject: "u", IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour),
		User: &store.UserToken{Name: "token-a"}}
	if err := c.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	c.Touch("j1", first)
	clk.Step(30 * time.Second)
	c.Touch("j1", clk.Now()) // within the interval: not queued
	if err := c.FlushTouches(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := st.GetRecord(ctx, "j1")
	if got.User.LastUsedAt == nil || !got.User.LastUsedAt.Equal(first.Truncate(time.Second)) {
		t.Fatalf("lastUsedAt = %v, want %v", got.User.LastUsedAt, first)
	}
	clk.Step(31 * time.Second)
	c.Touch("j1", clk.Now())
	if err := c.FlushTouches(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetRecord(ctx, "j1")
	if !got.User.LastUsedAt.Equal(clk.Now().Truncate(time.Second)) {
		t.Fatalf("lastUsedAt = %v after a minute, want %v", got.User.LastUsedAt, clk.Now())
	}
}

// TestSubjectMarksExpireAndOnlyTheNewestIsKept: a subject mark outlives
// every token it can refuse (SubjectMarkLifetime) and then goes, from the
// store and the index; repeated marks of one subject leave one.
func TestSubjectMarksExpireAndOnlyTheNewestIsKept(t *testing.T) {
	const lifetime = 24 * time.Hour
	c, st, clk := newAuthorityWith(t, Options{SubjectMarkLifetime: lifetime})
	ctx := context.Background()
	issued := clk.Now()
	for i := range 5 { // five VNC DELETEs of one VM
		clk.Step(time.Minute)
		if err := c.Revoke(ctx, &store.Revocation{Name: "vnc-" + strconv.Itoa(i), Scope: store.ScopeSubject, Target: "vm", Created: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	revs, _ := st.ListRevocations(ctx)
	if len(revs) != 1 || revs[0].Name != "vnc-4" || revs[0].ExpiresAt == nil || !revs[0].ExpiresAt.Equal(revs[0].Created.Add(lifetime)) {
		t.Fatalf("marks after purge = %+v; want only the newest, expiring %v after it", revs, lifetime)
	}
	rec := &store.Record{JTI: "j", Subject: "vm", IssuedAt: issued}
	if _, revoked, _ := c.Revoked(rec); !revoked {
		t.Fatal("a token minted before the marks is not refused")
	}
	clk.Step(lifetime + time.Hour)
	if _, err := c.PurgeExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if revs, _ := st.ListRevocations(ctx); len(revs) != 0 {
		t.Fatalf("a mark outlived every token it could refuse: %+v", revs)
	}
	c.mu.RLock()
	n := len(c.subjects)
	c.mu.RUnlock()
	if n != 0 {
		t.Fatalf("the index still holds %d expired marks", n)
	}
}

// TestCachedUserTokensKeepWhetherDisabled: the record cache drops a user
// token's API fields, but a review still reads whether it is disabled, both
// from a record read from the store and from one this replica created.
func TestCachedUserTokensKeepWhetherDisabled(t *testing.T) {
	c, st, clk := newAuthority(t, 100)
	ctx := context.Background()
	for _, disabled := range []bool{false, true} {
		user := func(jti string) *store.Record {
			return &store.Record{JTI: jti, Kind: store.KindUser, Subject: "u", IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour),
				User: &store.UserToken{Name: "token-" + jti, Description: "ci", Disabled: disabled, Labels: map[string]string{"a": "b"}}}
		}
		stored, created := "stored-"+strconv.FormatBool(disabled), "created-"+strconv.FormatBool(disabled)
		if err := st.CreateRecord(ctx, user(stored), store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.CreateRecord(ctx, user(created), store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		for _, jti := range []string{stored, created} {
			for range 2 { // the store's copy, then the cached one
				got, err := c.Record(ctx, jti)
				if err != nil {
					t.Fatal(err)
				}
				if got.User == nil || got.User.Disabled != disabled {
					t.Fatalf("record %s for reviews: user %+v, want disabled=%v", jti, got.User, disabled)
				}
				c.Wait()
			}
		}
		if got, _ := st.GetRecord(ctx, created); got.User.Name != "token-"+created || got.User.Description != "ci" {
			t.Fatalf("the stored record lost its API fields: %+v", got.User)
		}
	}
}

// TestCachedServiceAccountRecordsKeepTheirAccount: the record cache shares
// a ServiceAccount token's uid between the record and its bound account,
// and both still read as stored.
func TestCachedServiceAccountRecordsKeepTheirAccount(t *testing.T) {
	c, st, clk := newAuthority(t, 100)
	ctx := context.Background()
	account := store.BoundObject{APIVersion: "v1", Kind: "ServiceAccount", Namespace: "ns", Name: "sa", UID: "5f0c4f86-8f51-4c39-a0a4-2b5d4e0f6a11"}
	rec := &store.Record{JTI: "j1", Kind: store.KindServiceAccount, Subject: "system:serviceaccount:ns:sa", UID: account.UID,
		IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour), ServiceAccount: &account}
	if err := st.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the store's copy, then the cached one
		got, err := c.Record(ctx, "j1")
		if err != nil {
			t.Fatal(err)
		}
		if got.UID != account.UID || got.ServiceAccount == nil || *got.ServiceAccount != account {
			t.Fatalf("record for reviews: uid %q, account %+v; want %q, %+v", got.UID, got.ServiceAccount, account.UID, account)
		}
		c.Wait()
	}
}

// TestCachedRecordsShareTheirGroupLists: two tokens of one namespace, read
// for reviews, hold one group list between them; a token with other groups
// holds its own.
func TestCachedRecordsShareTheirGroupLists(t *testing.T) {
	c, st, clk := newAuthority(t, 100)
	ctx := context.Background()
	groups := map[string][]string{
		"j1": {"system:serviceaccounts", "system:serviceaccounts:ns"},
		"j2": {"system:serviceaccounts", "system:serviceaccounts:ns"},
		"j3": {"system:serviceaccounts", "system:serviceaccounts:other"},
	}
	for jti, g := range groups {
		rec := &store.Record{JTI: jti, Kind: store.KindServiceAccount, Subject: "system:serviceaccount:ns:sa", Groups: g,
			IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
		if err := st.CreateRecord(ctx, rec, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	read := map[string][]string{}
	for jti, want := range groups {
		got, err := c.Record(ctx, jti)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Groups, want) {
			t.Fatalf("%s: groups %v, want %v", jti, got.Groups, want)
		}
		if cap(got.Groups) != len(got.Groups) {
			t.Fatalf("%s: groups have room for %d more: an append would write into the shared list", jti, cap(got.Groups)-len(got.Groups))
		}
		read[jti] = got.Groups
	}
	if unsafe.SliceData(read["j1"]) != unsafe.SliceData(read["j2"]) {
		t.Error("two records with the same groups hold a list each")
	}
	if unsafe.SliceData(read["j3"]) == unsafe.SliceData(read["j1"]) {
		t.Error("a record with other groups holds the first list")
	}
}

// TestSharedListsAreExactAndBounded: lists that would join to the same text
// stay apart, and past its bound the holder copies lists without keeping them.
func TestSharedListsAreExactAndBounded(t *testing.T) {
	s := newSharedLists(2)
	lists := [][]string{{"a", "b"}, {"ab"}, {"a\x00b"}, {"a", "b"}}
	var got [][]string
	for _, l := range lists {
		got = append(got, s.share(l))
	}
	for i, l := range lists {
		if !slices.Equal(got[i], l) {
			t.Fatalf("share(%q) = %q", l, got[i])
		}
	}
	if unsafe.SliceData(got[3]) != unsafe.SliceData(got[0]) {
		t.Error("an equal list was not shared")
	}
	if len(s.lists) != 2 {
		t.Errorf("holds %d lists, want its bound, 2", len(s.lists))
	}
}
