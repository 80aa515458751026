package authn

import (
	"context"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
)

func BenchmarkReviewCached(b *testing.B) {
	f := newFixture(b)
	tok := f.mint(b, "system:serviceaccount:ns:sa", time.Hour).Value
	f.verifier.Review(context.Background(), tok, nil)
	f.wait()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res, err := f.verifier.Review(context.Background(), tok, nil); err != nil || !res.Authenticated() {
				b.Fatal(res.Reason, err)
			}
		}
	})
}

func BenchmarkReviewUncached(b *testing.B) {
	f := newFixture(b)
	tokens := make([]string, 2000)
	for i := range tokens {
		tokens[i] = f.mint(b, "system:serviceaccount:ns:sa", time.Hour).Value
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// A token's second review would hit the cache: give each pass a
		// fresh verifier cache by reviewing a token not seen since the
		// cache was last cleared.
		if i%len(tokens) == 0 && i > 0 {
			b.StopTimer()
			f = newFixture(b)
			for j := range tokens {
				tokens[j] = f.mint(b, "system:serviceaccount:ns:sa", time.Hour).Value
			}
			b.StartTimer()
		}
		if res, err := f.verifier.Review(context.Background(), tokens[i%len(tokens)], nil); err != nil || !res.Authenticated() {
			b.Fatal(res.Reason, err)
		}
	}
}

func BenchmarkRawJWXVerify(b *testing.B) {
	f := newFixture(b)
	tok := []byte(f.mint(b, "system:serviceaccount:ns:sa", time.Hour).Value)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jws.Verify(tok, jws.WithKey(f.key.Algorithm, f.key.RawPublic())); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMint(b *testing.B) {
	f := newFixture(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f.mint(b, "system:serviceaccount:ns:sa", time.Hour)
		}
	})
}
