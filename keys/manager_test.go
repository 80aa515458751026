package keys

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/store/bolt/bolttest"

	"github.com/lestrrat-go/jwx/v2/jwa"
	testingclock "k8s.io/utils/clock/testing"
)

// newManager manages a ring in a real bbolt store, sealed with a file
// key-encryption key, starting from one active key.
func newManager(t *testing.T, opts ManagerOptions) (*Manager, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	s := bolttest.Open(t)
	opts.Store, opts.Clock, opts.Rand = s, clk, rand.Reader
	if opts.Encryption == nil {
		opts.Encryption = testEncryption()
	}
	m := NewManager(mustRing(t), opts)
	if err := m.Load(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	return m, clk
}

// testEncryption is a file provider's service on a random key.
func testEncryption() *Encryption {
	kek := make([]byte, KEKSize)
	if _, err := rand.Read(kek); err != nil {
		panic(err)
	}
	return NewEncryption("file", NewAESService(kek, rand.Reader))
}

func mustRing(t *testing.T) *Ring {
	t.Helper()
	r, err := NewRing(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// storedStates reads the ring's states back from the store.
func storedStates(t *testing.T, m *Manager) string {
	t.Helper()
	ring, err := m.opts.Store.GetKeyRing(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, k := range ring.Keys {
		s = append(s, k.State)
	}
	return strings.Join(s, ",")
}

func states(r *Ring) string {
	var s []string
	for _, k := range r.Keys() {
		s = append(s, string(k.State))
	}
	return strings.Join(s, ",")
}

func TestRotationPublishesBeforeSigning(t *testing.T) {
	m, clk := newManager(t, ManagerOptions{PropagationDelay: 10 * time.Minute})
	old, _ := m.Ring().Signer()
	next, err := m.Rotate(t.Context(), jwa.EdDSA, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(m.Ring()); got != "active,next" {
		t.Fatalf("after rotate: %s, want active,next", got)
	}
	if _, err := m.Ring().VerificationKey(next.ID); err != nil {
		t.Fatal("the next key is not published")
	}
	if _, err := m.Rotate(t.Context(), "", false); !errors.Is(err, ErrRotationPending) {
		t.Fatalf("second rotate = %v, want ErrRotationPending", err)
	}
	clk.Step(10*time.Minute - time.Second)
	if changed, _ := m.Step(t.Context(), clk.Now()); changed {
		t.Fatal("promoted before the propagation delay")
	}
	clk.Step(time.Second)
	if changed, err := m.Step(t.Context(), clk.Now()); !changed || err != nil {
		t.Fatalf("Step at the promotion time = %v, %v", changed, err)
	}
	signer, _ := m.Ring().Signer()
	if signer.ID != next.ID || signer.Algorithm != jwa.EdDSA {
		t.Fatalf("signer = %s, want the new EdDSA key", signer.ID)
	}
	if k, err := m.Ring().VerificationKey(old.ID); err != nil || k.State != StateVerifying {
		t.Fatalf("old key: %v %v, want verifying", k, err)
	}
	if got := storedStates(t, m); got != "verifying,active" {
		t.Fatalf("stored ring = %s, want verifying,active", got)
	}
}

func TestAutomaticRotationAndImmediateRotation(t *testing.T) {
	m, clk := newManager(t, ManagerOptions{PropagationDelay: time.Minute, RotationPeriod: time.Hour})
	if changed, _ := m.Step(t.Context(), clk.Now()); changed {
		t.Fatal("rotated a fresh key")
	}
	clk.Step(time.Hour)
	if changed, _ := m.Step(t.Context(), clk.Now()); !changed || states(m.Ring()) != "active,next" {
		t.Fatalf("after the rotation period: %s", states(m.Ring()))
	}
	k, err := NewManager(m.Ring(), m.opts).Rotate(t.Context(), "", false)
	if !errors.Is(err, ErrRotationPending) || k != nil {
		t.Fatal("a second rotation started while one is pending")
	}
	m2, _ := newManager(t, ManagerOptions{PropagationDelay: time.Hour})
	now, err := m2.Rotate(t.Context(), "", true)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := m2.Ring().Signer(); s.ID != now.ID {
		t.Fatal("rotate now did not promote at once")
	}
}

func TestRetireAndPrune(t *testing.T) {
	m, clk := newManager(t, ManagerOptions{})
	old, _ := m.Ring().Signer()
	if _, err := m.Rotate(t.Context(), "", true); err != nil {
		t.Fatal(err)
	}
	live := true
	check := func(context.Context, string) (bool, error) { return live, nil }
	if err := m.Prune(context.Background(), old.ID, check); !errors.Is(err, ErrKeyInUse) {
		t.Fatalf("prune with live tokens = %v, want ErrKeyInUse", err)
	}
	signer, _ := m.Ring().Signer()
	if err := m.Prune(context.Background(), signer.ID, func(context.Context, string) (bool, error) { return false, nil }); !errors.Is(err, ErrKeyInUse) {
		t.Fatalf("prune of the active key = %v, want ErrKeyInUse", err)
	}
	clk.Step(time.Minute)
	if _, err := m.Retire(t.Context(), old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ring().VerificationKey(old.ID); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("retired key: %v", err)
	}
	stored, err := m.opts.Store.GetKeyRing(t.Context())
	if err != nil || stored.Keys[0].State != string(StateRetired) || !stored.Keys[0].RetiredAt.Equal(clk.Now()) {
		t.Fatalf("retirement not durable: %+v, %v", stored, err)
	}
	live = false
	if err := m.Prune(context.Background(), old.ID, check); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ring().VerificationKey(old.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("pruned key: %v", err)
	}
	if got := storedStates(t, m); got != "active" {
		t.Fatalf("stored ring after prune = %s, want active", got)
	}
}

func TestJWKSHasOnlyPublishedPublicKeys(t *testing.T) {
	m, _ := newManager(t, ManagerOptions{PropagationDelay: time.Hour})
	active, _ := m.Ring().Signer()
	next, _ := m.Rotate(t.Context(), jwa.RS256, false)
	rec := httptest.NewRecorder()
	JWKSHandler(m.Ring(), time.Minute).ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if rec.Header().Get("Cache-Control") != "public, max-age=60" {
		t.Fatalf("Cache-Control = %q", rec.Header().Get("Cache-Control"))
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Fatalf("JWKS has the private member %q", private)
			}
		}
		kids = append(kids, k["kid"].(string))
	}
	if strings.Join(kids, ",") != active.ID+","+next.ID {
		t.Fatalf("JWKS kids = %v, want the active and the next key", kids)
	}
	if _, err := m.Retire(t.Context(), active.ID); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	JWKSHandler(m.Ring(), time.Minute).ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if strings.Contains(rec.Body.String(), active.ID) {
		t.Fatal("a retired key is still published")
	}
}
