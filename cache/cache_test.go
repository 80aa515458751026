package cache

import (
	"crypto/rand"
	"strconv"
	"testing"
	"time"
)

// MaxEntries counts entries: a cache sized for N holds (nearly) N.
func TestMaxEntriesCountsEntries(t *testing.T) {
	const n = 4000
	c, err := New[string](2 * n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range n {
		c.Set(strconv.Itoa(i), strconv.Itoa(i), time.Hour)
		if i%1000 == 999 {
			c.Wait()
		}
	}
	c.Wait()
	hits := 0
	for i := range n {
		if v, ok := c.Get(strconv.Itoa(i)); ok && v == strconv.Itoa(i) {
			hits++
		}
	}
	// ristretto may drop a Set under contention; sequential Sets into a
	// cache with room should nearly all land.
	if hits < n*95/100 {
		t.Fatalf("%d of %d entries cached in a cache sized for %d", hits, n, 2*n)
	}
	if s := c.Stats(); s.Hits != uint64(hits) || s.Misses != uint64(n-hits) {
		t.Fatalf("stats %+v after %d hits of %d lookups", s, hits, n)
	}
}

func TestSetWithoutTimeLeftCachesNothing(t *testing.T) {
	c, err := New[string](10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	c.Set("expired", "v", 0)
	c.Wait()
	if _, ok := c.Get("expired"); ok {
		t.Fatal("an entry with no time left was cached")
	}
}

func TestTokenKeyIsNotTheToken(t *testing.T) {
	k1, err := NewKeyer(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := NewKeyer(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := k1.Key("secret.token.value")
	if k == "secret.token.value" || len(k) != 32 {
		t.Fatalf("key %q is not a 32-byte HMAC", k)
	}
	if k != k1.Key("secret.token.value") {
		t.Fatal("key is not stable within a process")
	}
	if k == k2.Key("secret.token.value") {
		t.Fatal("two keyers share an HMAC key")
	}
}

// Entries dropped for room count as evictions; those deleted do not.
func TestEvictionsCountDroppedEntries(t *testing.T) {
	const size = 10
	c, err := New[int](size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i := range 10 * size {
		c.Set(strconv.Itoa(i), i, time.Hour)
		c.Wait()
	}
	held := 0
	for i := range 10 * size {
		if _, ok := c.Get(strconv.Itoa(i)); ok {
			held++
		}
	}
	if held > size {
		t.Fatalf("%d entries held in a cache sized for %d", held, size)
	}
	evicted := c.Stats().Evictions
	if evicted < uint64(9*size) {
		t.Fatalf("%d evictions counted after %d sets into a cache sized for %d", evicted, 10*size, size)
	}
	for i := range 10 * size {
		c.Del(strconv.Itoa(i))
	}
	c.Wait()
	if got := c.Stats().Evictions; got != evicted {
		t.Fatalf("deletes counted as evictions: %d, then %d", evicted, got)
	}
}
