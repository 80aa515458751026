package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"
	"time"

	"portcullis.dev/portcullis/keys/keystest"
	"portcullis.dev/portcullis/store/bolt/bolttest"

	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
)

// cachedReviewBytes measures what a cached review costs in heap, through the
// real pipeline: n ServiceAccount tokens (over 1,000 namespaces) are minted
// into a bbolt store, then a fresh verifier and revocation authority review
// each once, which leaves a verified-signature entry and a record entry per
// token. The heap they grew by (after GC) over the reviews whose entries
// were both held is the figure. The caches are sized n, as a server's are
// sized by its configured entries: their fixed parts (ristretto's counters)
// are counted at the size they have when full.
func cachedReviewBytes(t *testing.T, n int) (perReview float64, held int) {
	t.Helper()
	const iss, aud = "https://portcullis.portcullis.svc", "https://kubernetes.default.svc.cluster.local"
	clk := clock.RealClock{}
	ring := keystest.NewRing(t, keystest.NewKey(t, keys.StateActive, clk.Now()))
	st := bolttest.Open(t)
	defer st.Close() // now: the scale rows after this measure the process's RSS
	writer, err := revocation.New(st, revocation.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	minter := issuer.NewMinter(iss, ring, writer, clk, rand.Reader)
	tokens := make([]string, n)
	if rate, _ := runLoad(n, concurrency, func(i int) error {
		ns := fmt.Sprintf("ns-%d", i%1000)
		tok, err := minter.Mint(context.Background(), issuer.Request{
			Kind: store.KindServiceAccount, Subject: fmt.Sprintf("system:serviceaccount:%s:sa-%d", ns, i), UID: fmt.Sprintf("%036d", i),
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}, Audiences: []string{aud}, Lifetime: time.Hour,
		})
		if err == nil {
			tokens[i] = tok.Value
		}
		return err
	}); rate == 0 {
		t.Fatal("minting failed")
	}
	writer.Close()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	state, err := revocation.New(st, revocation.Options{Clock: clk, MaxEntries: int64(n)})
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if err := state.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := authn.NewVerifier(ring, state, authn.VerifierOptions{Issuer: iss, APIAudiences: []string{aud}, CacheEntries: int64(n)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, tok := range tokens {
		if res, err := v.Review(context.Background(), tok, nil); err != nil || !res.Authenticated() {
			t.Fatalf("review: %v %s", err, res.Reason)
		}
	}
	v.WaitCache()
	state.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	// A second pass counts what both caches held (a hit in each).
	signatures, records := v.CacheStats().Hits, state.RecordCacheStats().Hits
	for _, tok := range tokens {
		v.Review(context.Background(), tok, nil)
	}
	held = int(min(v.CacheStats().Hits-signatures, state.RecordCacheStats().Hits-records))
	runtime.KeepAlive(tokens)
	if held == 0 {
		t.Fatal("the caches kept nothing")
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(held), held
}
