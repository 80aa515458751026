package keystest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"portcullis.dev/portcullis/keys"
)

// NewKey generates an ES256 key created at now, in state.
func NewKey(tb testing.TB, state keys.State, now time.Time) *keys.Key {
	tb.Helper()
	k, err := keys.Generate(jwa.ES256, rand.Reader, now)
	if err != nil {
		tb.Fatal(err)
	}
	k.State = state
	return k
}

// NewRing is a ring of ks.
func NewRing(tb testing.TB, ks ...*keys.Key) *keys.Ring {
	tb.Helper()
	ring, err := keys.NewRing(ks)
	if err != nil {
		tb.Fatal(err)
	}
	return ring
}
