package keys

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	testingclock "k8s.io/utils/clock/testing"
)

func newManager(t *testing.T, opts ManagerOptions) (*Manager, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	k, err := Generate(jwa.ES256, rand.Reader, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	k.State = StateActive
	opts.Dir = t.TempDir()
	opts.Clock, opts.Rand = clk, rand.Reader
	if err := SaveDir(opts.Dir, []*Key{k}); err != nil {
		t.Fatal(err)
	}
	ring, err := NewRing([]*Key{k})
	if err != nil {
		t.Fatal(err)
	}
	return NewManager(ring, opts), clk
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
	next, err := m.Rotate(jwa.EdDSA, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(m.Ring()); got != "active,next" {
		t.Fatalf("after rotate: %s, want active,next", got)
	}
	if _, err := m.Ring().VerificationKey(next.ID); err != nil {
		t.Fatal("the next key is not published")
	}
	if _, err := m.Rotate("", false); !errors.Is(err, ErrRotationPending) {
		t.Fatalf("second rotate = %v, want ErrRotationPending", err)
	}
	clk.Step(10*time.Minute - time.Second)
	if changed, _ := m.Step(clk.Now()); changed {
		t.Fatal("promoted before the propagation delay")
	}
	clk.Step(time.Second)
	if changed, err := m.Step(clk.Now()); !changed || err != nil {
		t.Fatalf("Step at the promotion time = %v, %v", changed, err)
	}
	signer, _ := m.Ring().Signer()
	if signer.ID != next.ID || signer.Algorithm != jwa.EdDSA {
		t.Fatalf("signer = %s, want the new EdDSA key", signer.ID)
	}
	if k, err := m.Ring().VerificationKey(old.ID); err != nil || k.State != StateVerifying {
		t.Fatalf("old key: %v %v, want verifying", k, err)
	}
	// The change is on disk: a reload sees the same ring.
	keys, err := LoadDir(m.opts.Dir)
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadDir = %d keys, %v", len(keys), err)
	}
}

func TestAutomaticRotationAndImmediateRotation(t *testing.T) {
	m, clk := newManager(t, ManagerOptions{PropagationDelay: time.Minute, RotationPeriod: time.Hour})
	if changed, _ := m.Step(clk.Now()); changed {
		t.Fatal("rotated a fresh key")
	}
	clk.Step(time.Hour)
	if changed, _ := m.Step(clk.Now()); !changed || states(m.Ring()) != "active,next" {
		t.Fatalf("after the rotation period: %s", states(m.Ring()))
	}
	k, err := NewManager(m.Ring(), m.opts).Rotate("", false)
	if !errors.Is(err, ErrRotationPending) || k != nil {
		t.Fatal("a second rotation started while one is pending")
	}
	m2, _ := newManager(t, ManagerOptions{PropagationDelay: time.Hour})
	now, err := m2.Rotate("", true)
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
	if _, err := m.Rotate("", true); err != nil {
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
	if _, err := m.Retire(old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ring().VerificationKey(old.ID); !errors.Is(err, ErrRetiredKey) {
		t.Fatalf("retired key: %v", err)
	}
	reloaded, _ := LoadDir(m.opts.Dir)
	if reloaded[0].State != StateRetired || !reloaded[0].RetiredAt.Equal(clk.Now()) {
		t.Fatalf("retirement not durable: %+v", reloaded[0])
	}
	live = false
	if err := m.Prune(context.Background(), old.ID, check); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ring().VerificationKey(old.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("pruned key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(m.opts.Dir, old.ID+".jwk")); !os.IsNotExist(err) {
		t.Fatalf("pruned key file left behind: %v", err)
	}
}

func TestJWKSHasOnlyPublishedPublicKeys(t *testing.T) {
	m, _ := newManager(t, ManagerOptions{PropagationDelay: time.Hour})
	active, _ := m.Ring().Signer()
	next, _ := m.Rotate(jwa.RS256, false)
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
	if _, err := m.Retire(active.ID); err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	JWKSHandler(m.Ring(), time.Minute).ServeHTTP(rec, httptest.NewRequest("GET", JWKSPath, nil))
	if strings.Contains(rec.Body.String(), active.ID) {
		t.Fatal("a retired key is still published")
	}
}

// atomicWriterDir lays keys out as kubelet's AtomicWriter does for a Secret
// volume: a timestamped directory holding the files, a ..data symlink to
// it, and one symlink per file through ..data. Calling it again swaps
// ..data to a new timestamped directory, as a Secret update does.
type atomicWriterDir struct {
	t    *testing.T
	dir  string
	n    int
	prev string
}

func (a *atomicWriterDir) write(keys []*Key) {
	a.t.Helper()
	a.n++
	ts := fmt.Sprintf("..2026_12_02_10_00_%02d.%09d", a.n, a.n)
	if err := SaveDir(filepath.Join(a.dir, ts), keys); err != nil {
		a.t.Fatal(err)
	}
	tmp := filepath.Join(a.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		a.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.dir, "..data")); err != nil {
		a.t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(a.dir, ts))
	for _, e := range entries {
		link := filepath.Join(a.dir, e.Name())
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", e.Name()), link); err != nil {
			a.t.Fatal(err)
		}
	}
	if a.prev != "" {
		os.RemoveAll(filepath.Join(a.dir, a.prev))
	}
	a.prev = ts
}

// TestRunFollowsSecretVolumeUpdates: a ring rotated by updating the Secret
// (kubelet swaps ..data; no event names ring.json) is picked up by Run.
func TestRunFollowsSecretVolumeUpdates(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	first, err := Generate(jwa.ES256, rand.Reader, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	first.State = StateActive
	mount := &atomicWriterDir{t: t, dir: t.TempDir()}
	mount.write([]*Key{first})
	loaded, err := LoadDir(mount.dir)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := NewRing(loaded)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ring, ManagerOptions{Dir: mount.dir, Clock: clk, Rand: rand.Reader})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx, 20*time.Millisecond)

	second, err := Generate(jwa.ES256, rand.Reader, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	second.State = StateNext
	second.PromoteAt = clk.Now().Add(time.Hour)
	mount.write([]*Key{first, second})
	for range 200 {
		if _, err := ring.VerificationKey(second.ID); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("the ring never picked up the key added by the Secret update: %s", states(ring))
}
