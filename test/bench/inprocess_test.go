package bench

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store/bolt"
)

// inProcessUncached reviews each token once through a fresh verifier over
// the same store file (the server is stopped so the file is free).
func inProcessUncached(tb testing.TB, e *env, tokens []string) float64 {
	tb.Helper()
	e.stop()
	defer e.start(tb)
	ring := loadRing(tb, e.cfg.KeysDir)
	st, err := bolt.Open(e.cfg.Store.Path, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	c, err := revocation.New(st, revocation.Options{Clock: clock.RealClock{}})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	v, err := authn.NewVerifier(ring, c, authn.VerifierOptions{Issuer: e.cfg.Issuer, APIAudiences: e.cfg.APIAudiences, Rand: rand.Reader})
	if err != nil {
		tb.Fatal(err)
	}
	defer v.Close()
	rate, _ := runLoad(len(tokens), concurrency, func(i int) error {
		res, err := v.Review(context.Background(), tokens[i], nil)
		if err != nil || !res.Authenticated() {
			return errNotAuthenticated(res.Reason, err)
		}
		return nil
	})
	return rate
}

func errNotAuthenticated(reason authn.Reason, err error) error {
	if err != nil {
		return err
	}
	return &notAuthenticated{reason}
}

type notAuthenticated struct{ reason authn.Reason }

func (e *notAuthenticated) Error() string { return "not authenticated: " + string(e.reason) }

// loadRing loads the key ring of an init directory's keys folder.
func loadRing(tb testing.TB, dir string) *keys.Ring {
	tb.Helper()
	ringKeys, err := keys.LoadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := keys.NewRing(ringKeys)
	if err != nil {
		tb.Fatal(err)
	}
	return ring
}
