package authn

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
	tokenfmt "portcullis.dev/portcullis/token"
)

func TestReviewGoodToken(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "system:serviceaccount:ns:sa", time.Hour)
	for _, pass := range []string{"uncached", "cached"} {
		res, err := f.verifier.Review(context.Background(), tok.Value, nil)
		if err != nil || !res.Authenticated() {
			t.Fatalf("%s: Review = %+v, %v; want authenticated", pass, res, err)
		}
		if res.User.Name != "system:serviceaccount:ns:sa" || res.User.UID != "uid-1" {
			t.Fatalf("%s: user = %+v", pass, res.User)
		}
		if got := res.User.Extra[tokenfmt.CredentialIDExtra]; !slices.Equal(got, []string{"JTI=" + tok.Record.JTI}) {
			t.Fatalf("%s: credential-id = %v", pass, got)
		}
		if !slices.Equal(res.Audiences, []string{testAudience}) {
			t.Fatalf("%s: audiences = %v", pass, res.Audiences)
		}
		f.wait()
	}
}

func TestReviewAudienceIntersection(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour, "a", "b")
	res, err := f.verifier.Review(context.Background(), tok.Value, []string{"c", "b", "a"})
	if err != nil || !res.Authenticated() || !slices.Equal(res.Audiences, []string{"b", "a"}) {
		t.Fatalf("Review = %+v, %v; want authenticated with audiences [b a]", res, err)
	}
}

func TestReviewTimes(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", 10*time.Minute)
	f.clock.Step(10*time.Minute + DefaultLeeway - time.Second)
	// Inside the leeway the token's exp passes, but the store's expiry wins.
	if res, _ := f.verifier.Review(context.Background(), tok.Value, nil); res.Reason != ReasonRecordExpired {
		t.Fatalf("within leeway after record expiry: reason %q, want %q", res.Reason, ReasonRecordExpired)
	}
	f.clock.Step(2 * time.Second)
	if res, _ := f.verifier.Review(context.Background(), tok.Value, nil); res.Reason != ReasonExpired {
		t.Fatalf("past leeway: reason %q, want %q", res.Reason, ReasonExpired)
	}

	future := newFixture(t)
	future.clock.Step(5 * time.Minute)
	early := future.mint(t, "u", time.Hour)
	future.clock.SetTime(future.clock.Now().Add(-5 * time.Minute))
	if res, _ := future.verifier.Review(context.Background(), early.Value, nil); res.Reason != ReasonNotYetValid {
		t.Fatalf("nbf in the future: reason %q, want %q", res.Reason, ReasonNotYetValid)
	}
	future.clock.Step(4*time.Minute + 30*time.Second)
	if res, _ := future.verifier.Review(context.Background(), early.Value, nil); !res.Authenticated() {
		t.Fatalf("nbf within leeway: reason %q, want authenticated", res.Reason)
	}
}

func TestReviewRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.mint(t, "system:serviceaccount:ns:a", time.Hour)
	b := f.mint(t, "system:serviceaccount:ns:b", time.Hour)
	for _, tok := range []*issuer.Token{a, b} {
		if res, _ := f.verifier.Review(ctx, tok.Value, nil); !res.Authenticated() {
			t.Fatalf("fresh token refused: %q", res.Reason)
		}
	}
	f.wait() // both are now cached: the revocation must still win
	if err := f.state.Revoke(ctx, &store.Revocation{Name: "r1", Scope: store.ScopeJTI, Target: a.Record.JTI, Created: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.verifier.Review(ctx, a.Value, nil); res.Reason != ReasonRevoked {
		t.Fatalf("revoked jti: reason %q, want revoked", res.Reason)
	}
	if res, _ := f.verifier.Review(ctx, b.Value, nil); !res.Authenticated() {
		t.Fatalf("other token refused after a jti revocation: %q", res.Reason)
	}

	f.clock.Step(time.Second)
	if err := f.state.Revoke(ctx, &store.Revocation{Name: "r2", Scope: store.ScopeSubject, Target: "system:serviceaccount:ns:b", Created: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.verifier.Review(ctx, b.Value, nil); res.Reason != ReasonRevoked {
		t.Fatalf("revoked subject: reason %q, want revoked", res.Reason)
	}
	// A token minted after the subject's mark is good: the mark is "not before".
	f.clock.Step(time.Nanosecond)
	later := f.mint(t, "system:serviceaccount:ns:b", time.Hour)
	if res, _ := f.verifier.Review(ctx, later.Value, nil); !res.Authenticated() {
		t.Fatalf("token minted after the subject revocation refused: %q", res.Reason)
	}

	// The revocations are in the store: a fresh cache on it refuses too.
	fresh, err := revocation.New(f.store, revocation.Options{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	v := newVerifier(t, f.ring, fresh, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock})
	if _, err := v.Review(ctx, b.Value, nil); err == nil {
		t.Fatal("review before the index was loaded did not fail closed")
	}
	if err := fresh.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []*issuer.Token{a, b} {
		if res, _ := v.Review(ctx, tok.Value, nil); res.Reason != ReasonRevoked {
			t.Fatalf("after reload: reason %q, want revoked", res.Reason)
		}
	}
}

func TestReviewStoreDown(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour)
	// A fresh cache has no record cached, so the review must ask the store.
	v := f.freshVerifier(t)
	f.store.Close()
	res, err := v.Review(context.Background(), tok.Value, nil)
	if err == nil || res.Authenticated() {
		t.Fatalf("store closed: Review = %+v, %v; want an error and no user", res, err)
	}
}

func TestRetiredKeyRefusedEvenWhenCached(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour)
	if res, _ := f.verifier.Review(context.Background(), tok.Value, nil); !res.Authenticated() {
		t.Fatal(res.Reason)
	}
	f.wait()
	retired := *f.key
	retired.State = keys.StateRetired
	if err := f.ring.Replace([]*keys.Key{&retired}); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.verifier.Review(context.Background(), tok.Value, nil); res.Reason != ReasonRetiredKey {
		t.Fatalf("reason %q, want retired_key", res.Reason)
	}
}

func TestMintedClaims(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, "u", time.Hour, "only-one")
	msg, err := jws.Parse([]byte(tok.Value))
	if err != nil {
		t.Fatal(err)
	}
	if kid := msg.Signatures()[0].ProtectedHeaders().KeyID(); kid != f.key.ID {
		t.Fatalf("kid = %q, want %q", kid, f.key.ID)
	}
	thumb, _ := f.key.Public().Thumbprint(0x5) // crypto.SHA256
	if f.key.ID != base64.RawURLEncoding.EncodeToString(thumb) {
		t.Fatal("kid is not the RFC 7638 SHA-256 thumbprint")
	}
	var claims map[string]any
	json.Unmarshal(msg.Payload(), &claims)
	if _, isArray := claims["aud"].([]any); !isArray {
		t.Fatalf("aud = %#v, want an array even with one audience", claims["aud"])
	}
	for _, c := range []string{"iss", "sub", "iat", "nbf", "exp", "jti", tokenfmt.PrivateClaim} {
		if _, ok := claims[c]; !ok {
			t.Fatalf("claim %q missing from %v", c, claims)
		}
	}
	if jti, _ := base64.RawURLEncoding.DecodeString(claims["jti"].(string)); len(jti) != 16 {
		t.Fatalf("jti has %d bytes, want 16", len(jti))
	}
	var pub jwk.Key = f.key.Public()
	if _, err := jws.Verify([]byte(tok.Value), jws.WithKey(jwa.ES256, pub)); err != nil {
		t.Fatalf("a standard JOSE verifier refuses the token: %v", err)
	}
}

func TestStatelessTokens(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.minter.Mint(ctx, issuer.Request{
		Kind: store.KindVNC, Subject: "system:serviceaccount:vms:vm1-vnc-access",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:vms"}, Extra: map[string][]string{"token.kubevirt.io/vm-name": {"vm1"}},
		Audiences: []string{testAudience}, Lifetime: time.Hour, Stateless: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.GetRecord(ctx, tok.Record.JTI); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a stateless token was recorded: %v", err)
	}
	res, err := f.verifier.Review(ctx, tok.Value, nil)
	if err != nil || !res.Authenticated() || res.User.Name != "system:serviceaccount:vms:vm1-vnc-access" ||
		!slices.Equal(res.User.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:vms"}) ||
		!slices.Equal(res.User.Extra["token.kubevirt.io/vm-name"], []string{"vm1"}) {
		t.Fatalf("stateless token: %+v %v", res, err)
	}
	// A subject mark refuses it, from exact state, even when cached.
	f.wait()
	if err := f.state.Revoke(ctx, &store.Revocation{Name: "r", Scope: store.ScopeSubject, Target: "system:serviceaccount:vms:vm1-vnc-access", Created: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.verifier.Review(ctx, tok.Value, nil); res.Reason != ReasonRevoked {
		t.Fatalf("after the mark: %q, want revoked", res.Reason)
	}
	// Stateless claims without an exact issue time cannot be checked against marks.
	now := f.clock.Now()
	forged := signRaw(t, jwa.ES256, f.key.Private(), map[string]any{jws.KeyIDKey: f.key.ID}, map[string]any{
		"iss": testIssuer, "sub": "u", "aud": []string{testAudience}, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j",
		"portcullis.dev": map[string]any{"kind": "vnc", "stateless": true},
	})
	if res, _ := f.verifier.Review(ctx, forged, nil); res.Reason != ReasonMalformed {
		t.Fatalf("stateless without issuedAt: %q, want malformed", res.Reason)
	}
}

// countingStore counts record reads, to prove a review did not ask the store.
type countingStore struct {
	store.Store
	reads atomic.Int64
}

func (s *countingStore) GetRecord(ctx context.Context, jti string) (*store.Record, error) {
	s.reads.Add(1)
	return s.Store.GetRecord(ctx, jti)
}

func (s *countingStore) Watch(ctx context.Context) (<-chan store.Event, error) {
	return s.Store.(store.Watcher).Watch(ctx)
}

// TestStaleReplicaDecidesNothing: a replica sharing its store whose watch
// has not proven it current within the bound answers no review, good or
// bad, and does not wait on the store to find that out.
func TestStaleReplicaDecidesNothing(t *testing.T) {
	f := newFixture(t)
	tok := f.mint(t, subject, time.Hour)
	counting := &countingStore{Store: f.store}
	c, err := revocation.New(counting, revocation.Options{Clock: f.clock, Shared: true, Staleness: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, f.ring, c, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock})
	if res, err := v.Review(context.Background(), tok.Value, nil); err != nil || !res.Authenticated() {
		t.Fatalf("within the bound: %+v %v; want authenticated", res, err)
	}
	f.clock.Step(10*time.Second + time.Millisecond)
	reads := counting.reads.Load()
	fresh := f.mint(t, subject, time.Hour) // its record is not cached: a review would have to read it
	for _, token := range []string{tok.Value, fresh.Value} {
		res, err := v.Review(context.Background(), token, nil)
		if !errors.Is(err, revocation.ErrStale) || res.Authenticated() {
			t.Fatalf("past the bound: %+v %v; want undecided with revocation.ErrStale", res, err)
		}
	}
	if n := counting.reads.Load() - reads; n != 0 {
		t.Fatalf("a stale replica read %d records from the store; it must fail closed first", n)
	}
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, err := v.Review(context.Background(), fresh.Value, nil); err != nil || !res.Authenticated() {
		t.Fatalf("after a resync: %+v %v; want authenticated", res, err)
	}
}

// TestCachedEntriesShareTheAPIAudiences: tokens minted for the API audiences
// hold one list between their cached entries, not a copy each; a token for
// other audiences keeps its own.
func TestCachedEntriesShareTheAPIAudiences(t *testing.T) {
	f := newFixture(t)
	var lists [][]string
	for _, tok := range []*issuer.Token{f.mint(t, "a", time.Hour), f.mint(t, "b", time.Hour), f.mint(t, "c", time.Hour, "other")} {
		vt, reason := f.verifier.verify(tok.Value)
		if reason != "" {
			t.Fatalf("verify: %s", reason)
		}
		lists = append(lists, vt.Audiences)
	}
	if !slices.Equal(lists[0], []string{testAudience}) || !slices.Equal(lists[2], []string{"other"}) {
		t.Fatalf("audiences = %v", lists)
	}
	if unsafe.SliceData(lists[0]) != unsafe.SliceData(lists[1]) {
		t.Error("two tokens for the API audiences hold a list each")
	}
	if unsafe.SliceData(lists[2]) == unsafe.SliceData(lists[0]) {
		t.Error("a token for other audiences holds the API audiences' list")
	}
}
