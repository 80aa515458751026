package authntest

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"portcullis.dev/portcullis/keys"
)

// SeedKeyDir writes one active ES256 key into dir as an earlier version's
// key directory: a server started with --keys-dir dir imports it into its
// store and signs with it, so a test holds the private key it needs to
// forge tokens (the store keeps keys only sealed).
func SeedKeyDir(t testing.TB, dir string) *keys.Key {
	t.Helper()
	k, err := keys.Generate(jwa.ES256, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.State = keys.StateActive
	if err := keys.SaveDir(dir, []*keys.Key{k}); err != nil {
		t.Fatal(err)
	}
	return k
}
