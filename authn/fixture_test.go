package authn

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"portcullis.dev/portcullis/keys/keystest"
	"portcullis.dev/portcullis/store/bolt/bolttest"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
)

// fixture is a real ring, bbolt store, cache, minter and verifier on a fake clock.
type fixture struct {
	clock    *testingclock.FakeClock
	key      *keys.Key
	next     *keys.Key // published in the ring, not signing yet
	ring     *keys.Ring
	store    *bolt.Store
	state    *revocation.Authority
	minter   *issuer.Minter
	verifier *Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	key := keystest.NewKey(t, keys.StateActive, clk.Now())
	next := keystest.NewKey(t, keys.StateNext, clk.Now())
	ring := keystest.NewRing(t, key, next)
	st := bolttest.Open(t)
	c, err := revocation.New(st, revocation.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &fixture{
		clock: clk, key: key, next: next, ring: ring, store: st, state: c,
		minter:   issuer.NewMinter(testIssuer, ring, c, clk, rand.Reader),
		verifier: newVerifier(t, ring, c, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: clk}),
	}
}

// freshVerifier is a verifier with a new, loaded cache over the fixture's
// store: nothing is cached, so every review asks the store.
func (f *fixture) freshVerifier(t testing.TB) *Verifier {
	t.Helper()
	c, err := revocation.New(f.store, revocation.Options{Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return newVerifier(t, f.ring, c, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock})
}

func (f *fixture) mint(t testing.TB, subject string, lifetime time.Duration, auds ...string) *issuer.Token {
	t.Helper()
	if len(auds) == 0 {
		auds = []string{testAudience}
	}
	tok, err := f.minter.Mint(context.Background(), issuer.Request{
		Kind: store.KindServiceAccount, Subject: subject, UID: "uid-1",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:ns"}, Audiences: auds, Lifetime: lifetime,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw signs arbitrary header fields and claims with key, as an attacker
// holding (or guessing) a key could.
func signRaw(t *testing.T, alg jwa.SignatureAlgorithm, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	payload, _ := json.Marshal(claims)
	h := jws.NewHeaders()
	for k, v := range hdr {
		if err := h.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// newVerifier is NewVerifier, failing the test on an error and closing the
// verifier with it.
func newVerifier(t testing.TB, ring Keys, state State, opts VerifierOptions) *Verifier {
	t.Helper()
	v, err := NewVerifier(ring, state, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// wait blocks until the fixture's caches applied their pending writes.
func (f *fixture) wait() {
	f.verifier.WaitCache()
	f.state.Wait()
}

const (
	testIssuer   = "https://portcullis.test"
	testAudience = "https://kubernetes.default.svc"
)
