package issuer_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"portcullis.dev/portcullis/keys/keystest"
	"portcullis.dev/portcullis/store/bolt/bolttest"

	clocktesting "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

// TestJTIsSortByMintingTime mints tokens into a real bbolt store, several
// within one millisecond, and lists the store in key order: the records come
// back in minting order, so a store's B+trees take each new token at their
// right edge. Each jti is the one in its token, and all are distinct.
func TestJTIsSortByMintingTime(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	ring := keystest.NewRing(t, keystest.NewKey(t, keys.StateActive, clk.Now()))
	st := bolttest.Open(t)
	m := issuer.NewMinter("https://portcullis.test", ring, st, clk, rand.Reader)

	var minted []string
	for i := range 200 {
		if i%5 == 0 {
			clk.SetTime(clk.Now().Add(time.Millisecond + 300*time.Microsecond))
		}
		tok, err := m.Mint(context.Background(), issuer.Request{
			Kind: store.KindServiceAccount, Subject: "system:serviceaccount:ns:sa", Audiences: []string{"api"}, Lifetime: time.Hour,
		})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := token.DecodeCompact(tok.Value)
		if err != nil {
			t.Fatal(err)
		}
		if claims.ID != tok.Record.JTI || len(claims.ID) != 22 {
			t.Fatalf("token's jti %q, record's %q: want the same, 22 characters", claims.ID, tok.Record.JTI)
		}
		minted = append(minted, tok.Record.JTI)
	}
	list, err := st.ListRecords(context.Background(), store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != len(minted) {
		t.Fatalf("listed %d records, minted %d", len(list.Items), len(minted))
	}
	seen := map[string]bool{}
	for i, r := range list.Items {
		if seen[r.JTI] {
			t.Fatalf("jti %s minted twice", r.JTI)
		}
		seen[r.JTI] = true
		if i > 0 && r.IssuedAt.Before(list.Items[i-1].IssuedAt) {
			t.Fatalf("record %d (%s, issued %s) sorts after one issued later (%s, %s)", i, r.JTI, r.IssuedAt, list.Items[i-1].JTI, list.Items[i-1].IssuedAt)
		}
	}
}
