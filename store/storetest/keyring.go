package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"portcullis.dev/portcullis/store"
)

func storedKey(kid, state string) store.StoredKey {
	return store.StoredKey{
		ID: kid, Algorithm: "ES256", State: state, Created: time.Unix(1700000000, 0).UTC(),
		Public: []byte(`{"kty":"EC","kid":"` + kid + `"}`),
		Private: store.SealedKey{Provider: "file", KeyID: "kek-1", DataKey: []byte{1, 2, 3},
			Annotations: map[string][]byte{"a": {4}}, Ciphertext: []byte{5, 6, 7}},
	}
}

// swap stores keys over the ring at rev and returns the new revision.
func swap(t *testing.T, s store.Store, rev int64, keys ...store.StoredKey) int64 {
	t.Helper()
	next, err := s.SwapKeyRing(ctx(t), &store.KeyRing{Revision: rev, Keys: keys})
	if err != nil {
		t.Fatalf("SwapKeyRing from revision %d: %v", rev, err)
	}
	if next == 0 || next == rev {
		t.Fatalf("SwapKeyRing from revision %d returned revision %d", rev, next)
	}
	return next
}

func testKeyRingEmpty(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	ring, err := s.GetKeyRing(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if ring.Revision != 0 || len(ring.Keys) != 0 {
		t.Fatalf("a new store's key ring = %+v, want revision 0 and no keys", ring)
	}
}

func testKeyRingSwap(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	want := []store.StoredKey{storedKey("a", "active"), storedKey("b", "next")}
	rev := swap(t, s, 0, want...)
	ring, err := s.GetKeyRing(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if ring.Revision != rev {
		t.Fatalf("revision = %d, SwapKeyRing said %d", ring.Revision, rev)
	}
	if !reflect.DeepEqual(ring.Keys, want) {
		t.Fatalf("keys = %+v\nwant %+v", ring.Keys, want)
	}
	rev2 := swap(t, s, rev, storedKey("b", "active"))
	if ring, err = s.GetKeyRing(ctx(t)); err != nil || ring.Revision != rev2 || len(ring.Keys) != 1 || ring.Keys[0].State != "active" {
		t.Fatalf("after the second swap: %+v, %v", ring, err)
	}
}

func testKeyRingConflict(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	rev := swap(t, s, 0, storedKey("a", "active"))
	if _, err := s.SwapKeyRing(ctx(t), &store.KeyRing{Revision: 0, Keys: []store.StoredKey{storedKey("x", "active")}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a second first swap: err = %v, want ErrConflict", err)
	}
	swap(t, s, rev, storedKey("a", "verifying"), storedKey("b", "active"))
	if _, err := s.SwapKeyRing(ctx(t), &store.KeyRing{Revision: rev, Keys: []store.StoredKey{storedKey("c", "active")}}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a swap from a stale revision: err = %v, want ErrConflict", err)
	}
	ring, err := s.GetKeyRing(ctx(t))
	if err != nil || len(ring.Keys) != 2 || ring.Keys[1].ID != "b" {
		t.Fatalf("a refused swap changed the ring: %+v, %v", ring, err)
	}
}

// testKeyRingConcurrentSwaps is what keeps N replicas from rotating N
// times: of swaps from the same revision, exactly one is stored.
func testKeyRingConcurrentSwaps(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	rev := swap(t, s, 0, storedKey("a", "active"))
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, conflicts := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SwapKeyRing(ctx(t), &store.KeyRing{Revision: rev, Keys: []store.StoredKey{storedKey("a", "active"), storedKey(string(rune('b'+i)), "next")}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || conflicts != n-1 {
		t.Fatalf("%d swaps from one revision: %d stored, %d conflicts; want 1 and %d", n, won, conflicts, n-1)
	}
}

func testKeyRingDurable(t *testing.T, s store.Store, reopen func(*testing.T) store.Store) {
	rev := swap(t, s, 0, storedKey("a", "active"))
	s = reopen(t)
	ring, err := s.GetKeyRing(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if ring.Revision != rev || len(ring.Keys) != 1 || !reflect.DeepEqual(ring.Keys[0], storedKey("a", "active")) {
		t.Fatalf("after reopening: %+v, want revision %d", ring, rev)
	}
	swap(t, s, rev, storedKey("a", "verifying"))
}

func testKeyRingWatch(t *testing.T, s store.Store, _ func(*testing.T) store.Store) {
	rev1 := swap(t, s, 0, storedKey("a", "active"))
	ch, err := s.WatchKeyRing(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	next := func() *store.KeyRing {
		t.Helper()
		select {
		case ring, ok := <-ch:
			if !ok {
				t.Fatal("the key ring watch closed")
			}
			return ring
		case <-time.After(10 * time.Second):
			t.Fatal("no key ring from the watch")
		}
		return nil
	}
	if ring := next(); ring.Revision != rev1 || len(ring.Keys) != 1 || ring.Keys[0].ID != "a" {
		t.Fatalf("first ring from the watch = %+v, want the stored one at revision %d", ring, rev1)
	}
	rev2 := swap(t, s, rev1, storedKey("a", "active"), storedKey("b", "next"))
	rev3 := swap(t, s, rev2, storedKey("a", "verifying"), storedKey("b", "active"))
	if ring := next(); ring.Revision != rev2 || len(ring.Keys) != 2 || ring.Keys[1].State != "next" {
		t.Fatalf("second ring = %+v, want revision %d with b next", ring, rev2)
	}
	if ring := next(); ring.Revision != rev3 || ring.Keys[1].State != "active" {
		t.Fatalf("third ring = %+v, want revision %d with b active", ring, rev3)
	}
}
