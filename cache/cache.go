// Package cache holds Portcullis' accelerators: bounded ristretto caches
// that save work (a signature check, a store read) and decide nothing.
// ristretto may drop any Set, so a cache never holds the only copy of
// anything: a miss asks the owner again, and revocations live in package
// revocation, never only here.
package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// DefaultMaxEntries bounds a cache when its owner names no size.
const DefaultMaxEntries = 100_000

// Cache is a bounded cache of V by string key, each entry costing 1.
type Cache[V any] struct {
	c *ristretto.Cache[string, V]
	// The counters are kept here, not by ristretto: its metrics also hold
	// the admission time of up to 100,000 keys, some 50 bytes an entry.
	hits, misses, evictions atomic.Uint64
}

// New returns a cache of at most maxEntries entries (0: DefaultMaxEntries).
func New[V any](maxEntries int64) (*Cache[V], error) {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	// Every entry costs 1, so MaxCost counts entries; ristretto's internal
	// per-entry cost would otherwise cut the bound to a fraction.
	cc := &Cache[V]{}
	c, err := ristretto.NewCache(&ristretto.Config[string, V]{
		NumCounters: 10 * maxEntries, MaxCost: maxEntries, BufferItems: 64, IgnoreInternalCost: true,
		OnEvict: func(*ristretto.Item[V]) { cc.evictions.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	cc.c = c
	return cc, nil
}

// Get returns the entry for key, if cached.
func (c *Cache[V]) Get(key string) (V, bool) {
	v, ok := c.c.Get(key)
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

// Set caches v for ttl (nothing when ttl is not positive). It may be dropped.
func (c *Cache[V]) Set(key string, v V, ttl time.Duration) {
	if ttl > 0 {
		c.c.SetWithTTL(key, v, 1, ttl)
	}
}

// Del drops the entry for key.
func (c *Cache[V]) Del(key string) { c.c.Del(key) }

// Clear drops every entry.
func (c *Cache[V]) Clear() { c.c.Clear() }

// Wait blocks until pending writes are applied; for tests and benchmarks
// that need a warm cache.
func (c *Cache[V]) Wait() { c.c.Wait() }

// Close stops the cache.
func (c *Cache[V]) Close() { c.c.Close() }

// Stats counts what the cache answered.
type Stats struct {
	Hits, Misses uint64
	// Evictions counts the entries dropped to make room, at expiry, or by
	// Clear; not those deleted by Del.
	Evictions uint64
}

// Stats returns the cache's counters.
func (c *Cache[V]) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load()}
}

// Keyer turns tokens into cache keys: an HMAC-SHA256 under a per-process
// random key, so a token itself is never held or compared.
type Keyer struct {
	hmacs sync.Pool
}

// NewKeyer draws the HMAC key from random.
func NewKeyer(random io.Reader) (*Keyer, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(random, key); err != nil {
		return nil, fmt.Errorf("cache: hmac key: %w", err)
	}
	return &Keyer{hmacs: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}, nil
}

// Key returns the key of token.
func (k *Keyer) Key(token string) string {
	h := k.hmacs.Get().(hash.Hash)
	h.Reset()
	io.WriteString(h, token)
	var sum [sha256.Size]byte
	key := string(h.Sum(sum[:0]))
	k.hmacs.Put(h)
	return key
}
