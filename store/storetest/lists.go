package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"portcullis.dev/portcullis/store"
)

// listAll reads every page of opts and returns the jtis, checking that no
// page is longer than the limit and no record comes twice.
func listAll(t *testing.T, s store.Store, opts store.ListOptions) []string {
	t.Helper()
	var jtis []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the listing never ends")
		}
		list, err := s.ListRecords(ctx(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		if opts.Limit > 0 && int64(len(list.Items)) > opts.Limit {
			t.Fatalf("a page of %d records with limit %d", len(list.Items), opts.Limit)
		}
		for _, r := range list.Items {
			if slices.Contains(jtis, r.JTI) {
				t.Fatalf("record %s listed twice", r.JTI)
			}
			jtis = append(jtis, r.JTI)
		}
		if list.Continue == "" {
			slices.Sort(jtis)
			return jtis
		}
		opts.Continue = list.Continue
	}
}

func jtiRange(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	slices.Sort(out)
	return out
}

// testListPages: a user's tokens, among other users' and other kinds,
// listed a page at a time, as kubectl --chunk-size does.
func testListPages(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	exp := base.Add(time.Hour)
	for i, jti := range jtiRange("a", 25) {
		mustCreate(t, s, userRecord(jti, fmt.Sprintf("token-a%02d", i), "alice", exp))
	}
	for i, jti := range jtiRange("b", 5) {
		mustCreate(t, s, userRecord(jti, fmt.Sprintf("token-b%02d", i), "bob", exp))
	}
	// A subject that is a prefix of another must not see its records.
	mustCreate(t, s, userRecord("c0", "token-c0", "ali", exp))
	for _, jti := range jtiRange("v", 3) {
		r := record(jti, "alice", exp)
		r.Kind = store.KindVNC
		mustCreate(t, s, r)
	}
	for _, limit := range []int64{0, 1, 10, 25, 100} {
		got := listAll(t, s, store.ListOptions{Kind: store.KindUser, Subject: "alice", Limit: limit})
		if !slices.Equal(got, jtiRange("a", 25)) {
			t.Fatalf("alice's user tokens with limit %d = %v", limit, got)
		}
	}
	if got := listAll(t, s, store.ListOptions{Kind: store.KindUser, Limit: 7}); len(got) != 31 {
		t.Fatalf("every user token, 7 a page: %d, want 31", len(got))
	}
	if got := listAll(t, s, store.ListOptions{Limit: 4}); len(got) != 34 {
		t.Fatalf("every record, 4 a page: %d, want 34", len(got))
	}
	if got := listAll(t, s, store.ListOptions{Subject: "alice", Limit: 6}); len(got) != 28 {
		t.Fatalf("alice's records of every kind, 6 a page: %d, want 28", len(got))
	}
	first, err := s.ListRecords(ctx(t), store.ListOptions{Kind: store.KindUser, Subject: "alice", Limit: 10})
	if err != nil || len(first.Items) != 10 || first.Continue == "" {
		t.Fatalf("first page: %d records, continue %q, %v", len(first.Items), first.Continue, err)
	}
}

func testListByKeyID(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	exp := base.Add(time.Hour)
	for i, jti := range jtiRange("k", 12) {
		r := record(jti, fmt.Sprintf("user-%d", i), exp)
		r.KeyID = "key-1"
		if i%3 == 0 {
			r.KeyID = "key-2"
		}
		mustCreate(t, s, r)
	}
	if got := listAll(t, s, store.ListOptions{KeyID: "key-2", Limit: 2}); !slices.Equal(got, []string{"k00", "k03", "k06", "k09"}) {
		t.Fatalf("records of key-2 = %v", got)
	}
	if got := listAll(t, s, store.ListOptions{KeyID: "key-1", Limit: 3}); len(got) != 8 {
		t.Fatalf("records of key-1: %d, want 8", len(got))
	}
	if got := listAll(t, s, store.ListOptions{KeyID: "key-3"}); len(got) != 0 {
		t.Fatalf("records of a key that signed none: %v", got)
	}
}

func testListInvalidContinue(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	exp := base.Add(time.Hour)
	for i, jti := range jtiRange("a", 3) {
		mustCreate(t, s, userRecord(jti, fmt.Sprintf("token-a%02d", i), "alice", exp))
	}
	page, err := s.ListRecords(ctx(t), store.ListOptions{Kind: store.KindUser, Subject: "alice", Limit: 1})
	if err != nil || page.Continue == "" {
		t.Fatalf("first page: %+v, %v", page, err)
	}
	// Alice's token cannot page through bob's tokens, nor a made-up one.
	for _, opts := range []store.ListOptions{
		{Kind: store.KindUser, Subject: "bob", Continue: page.Continue},
		{KeyID: "k", Continue: page.Continue},
		{Kind: store.KindUser, Subject: "alice", Continue: "not base64!"},
	} {
		if _, err := s.ListRecords(ctx(t), opts); !errors.Is(err, store.ErrInvalidContinue) {
			t.Fatalf("ListRecords(%+v) = %v, want ErrInvalidContinue", opts, err)
		}
	}
}

// testListAfterDelete: deleted and purged records leave the indexes.
func testListAfterDelete(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	mustCreate(t, s, userRecord("a1", "token-a1", "alice", base.Add(time.Hour)))
	mustCreate(t, s, userRecord("a2", "token-a2", "alice", base.Add(time.Minute)))
	mustCreate(t, s, userRecord("a3", "token-a3", "alice", base.Add(time.Hour)))
	if err := s.DeleteRecord(ctx(t), "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeExpired(ctx(t), base.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	opts := store.ListOptions{Kind: store.KindUser, Subject: "alice", Limit: 1}
	if got := listAll(t, s, opts); !slices.Equal(got, []string{"a3"}) {
		t.Fatalf("after a delete and a purge: %v, want [a3]", got)
	}
	if got := listAll(t, s, store.ListOptions{KeyID: "kid-1"}); !slices.Equal(got, []string{"a3"}) {
		t.Fatalf("by key after a delete and a purge: %v, want [a3]", got)
	}
}
