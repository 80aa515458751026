package cache

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/fanout"
	"portcullis.dev/portcullis/store"
)

// Verified is what a signature check proved about a token: the claims the
// review needs afterwards. It is cached so a repeated token skips the crypto.
type Verified struct {
	JTI       string
	Subject   string
	KeyID     string
	Issuer    string
	Audiences []string
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time
	// Stateless tokens have no record: Record is built from the claims.
	Stateless bool
	// Record is the identity of a stateless token, from its claims.
	Record *store.Record
}

// Options configures a Cache.
type Options struct {
	// MaxEntries bounds each ristretto cache (tokens and records).
	MaxEntries int64
	// RecordTTL is how long a record is reused before the store is asked
	// again: the staleness bound for record changes made elsewhere.
	RecordTTL time.Duration
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
	// Rand is the randomness for the per-process HMAC key; nil means crypto/rand.
	Rand io.Reader
	// Shared says other replicas write to the store too: the cache then
	// follows the store's watch (Run) and fails closed when it falls behind
	// RecordTTL. A store only this process writes (bbolt) needs neither.
	Shared bool
	// SubjectMarkLifetime is how long a subject mark must be kept: the
	// longest lifetime any front door can grant, plus the clock leeway.
	// After it no token minted before the mark can still be alive, so the
	// mark is given that expiry and purged with it (0: kept for ever).
	SubjectMarkLifetime time.Duration
}

// Cache is the cached, exact view of the store used by reviews.
type Cache struct {
	store        store.Store
	clock        clock.PassiveClock
	recordTTL    time.Duration
	markLifetime time.Duration

	tokens  *ristretto.Cache[string, *Verified]
	records *ristretto.Cache[string, *store.Record]
	lookups singleflight.Group
	hmacs   sync.Pool

	mu       sync.RWMutex
	revoked  map[string]time.Time   // jti -> when its record expires (then the entry can go)
	subjects map[string]subjectMark // subject -> its newest "not before" mark
	changed  map[string]change      // jti -> the latest record written here after its creation
	loaded   bool
	// changes is len(changed), read without the lock: reviews skip the map
	// (and the lock) while nothing was changed recently.
	changes atomic.Int64

	// revocations tells watchers of every revocation this replica learns
	// of, made through it or (from the store's watch) through another
	// replica, once durable. Slow watchers are closed, never waited for.
	revocations *fanout.Broadcaster[*store.Revocation]
	// watcher reports changes made through any replica (nil: the store has
	// one writer, this process); lastSync is when it last proved this
	// replica current (unix ns).
	watcher  store.Watcher
	lastSync atomic.Int64

	onRevoke func(ctx context.Context, rev *store.Revocation)

	touchMu sync.Mutex
	touched map[string]time.Time // jti -> last lastUsedAt written or queued
	pending map[string]time.Time // jti -> lastUsedAt to write
}

// subjectMark is the newest subject revocation: tokens of the subject issued
// at or before at are revoked; after expires (zero: never) no such token
// can be alive and the mark can go.
type subjectMark struct {
	at, expires time.Time
}

// change is a record as this replica last wrote it (nil: deleted). A cached
// copy fetched before the write may outlive it in ristretto for up to the
// record TTL, so the change is kept that long and wins over the copy.
type change struct {
	record *store.Record
	at     time.Time
}

// TouchInterval is the most often a token's lastUsedAt is written.
const TouchInterval = time.Minute

// sharedLookupTimeout bounds a store read shared by concurrent reviews (and
// so does the staleness bound, when shorter: a store that cannot answer
// within it makes the review undecided, not slow).
const sharedLookupTimeout = 10 * time.Second

// ErrNotLoaded means the revocation index was not loaded from the store yet,
// so no review can be decided.
var ErrNotLoaded = errors.New("cache: revocation index not loaded")

// New makes a cache over s. Call Load before serving reviews.
func New(s store.Store, opts Options) (*Cache, error) {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.RecordTTL <= 0 {
		opts.RecordTTL = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(opts.Rand, key); err != nil {
		return nil, fmt.Errorf("cache: hmac key: %w", err)
	}
	// Every entry costs 1, so MaxCost counts entries; ristretto's internal
	// per-entry cost would otherwise cut the bound to a fraction.
	tokens, err := ristretto.NewCache(&ristretto.Config[string, *Verified]{
		NumCounters: 10 * opts.MaxEntries, MaxCost: opts.MaxEntries, BufferItems: 64, IgnoreInternalCost: true, Metrics: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	records, err := ristretto.NewCache(&ristretto.Config[string, *store.Record]{
		NumCounters: 10 * opts.MaxEntries, MaxCost: opts.MaxEntries, BufferItems: 64, IgnoreInternalCost: true, Metrics: true,
	})
	if err != nil {
		tokens.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	var watcher store.Watcher
	if opts.Shared {
		w, ok := s.(store.Watcher)
		if !ok {
			tokens.Close()
			records.Close()
			return nil, fmt.Errorf("cache: a shared store must implement store.Watcher, %T does not", s)
		}
		watcher = w
	}
	return &Cache{
		watcher:      watcher,
		store:        s,
		clock:        opts.Clock,
		recordTTL:    opts.RecordTTL,
		markLifetime: opts.SubjectMarkLifetime,
		tokens:       tokens,
		records:      records,
		hmacs:        sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		revoked:      map[string]time.Time{},
		subjects:     map[string]subjectMark{},
		changed:      map[string]change{},
		revocations:  fanout.New[*store.Revocation](revocationWatchBuffer),
		touched:      map[string]time.Time{},
		pending:      map[string]time.Time{},
	}, nil
}

// Close stops the ristretto caches and the revocation watchers.
func (c *Cache) Close() {
	c.tokens.Close()
	c.records.Close()
	c.revocations.Close()
}

// revocationWatchBuffer is how many revocations a watcher may fall behind
// before it is closed (its client then lists again).
const revocationWatchBuffer = 256

// WatchRevocations sends every revocation this replica learns of from now
// on, made through it or through another replica, each once it is durable.
// A watcher that falls behind is closed.
func (c *Cache) WatchRevocations() (*fanout.Watcher[*store.Revocation], error) {
	return c.revocations.Watch(nil)
}

// Load reads every revocation from the store into the exact index. Reviews
// fail with ErrNotLoaded until it succeeded once. Revocations it finds that
// the index did not hold (made elsewhere while no watch ran) go to the
// revocation watchers.
func (c *Cache) Load(ctx context.Context) error {
	revs, err := c.store.ListRevocations(ctx)
	if err != nil {
		return fmt.Errorf("cache: load revocations: %w", err)
	}
	var learned []*store.Revocation
	c.mu.Lock()
	for _, rev := range revs {
		if c.applyLocked(rev) {
			learned = append(learned, rev)
		}
	}
	c.loaded = true
	c.lastSync.Store(c.clock.Now().UnixNano())
	c.mu.Unlock()
	for _, rev := range learned {
		c.revocations.Send(rev)
	}
	return nil
}

// applyLocked adds rev to the index and reports whether it was new to it.
func (c *Cache) applyLocked(rev *store.Revocation) bool {
	switch rev.Scope {
	case store.ScopeJTI:
		var exp time.Time
		if rev.ExpiresAt != nil {
			exp = *rev.ExpiresAt
		}
		_, known := c.revoked[rev.Target]
		c.revoked[rev.Target] = exp
		return !known
	case store.ScopeSubject:
		if cur, ok := c.subjects[rev.Target]; !ok || rev.Created.After(cur.at) {
			m := subjectMark{at: rev.Created}
			if rev.ExpiresAt != nil {
				m.expires = *rev.ExpiresAt
			}
			c.subjects[rev.Target] = m
			return true
		}
	}
	return false
}

// TokenKey returns the key a token is cached under: an HMAC-SHA256 under a
// per-process random key, so the token itself is never held or compared.
func (c *Cache) TokenKey(token string) string {
	h := c.hmacs.Get().(hash.Hash)
	h.Reset()
	io.WriteString(h, token)
	var sum [sha256.Size]byte
	key := string(h.Sum(sum[:0]))
	c.hmacs.Put(h)
	return key
}

// Verified returns the cached signature check for a token key, if any.
func (c *Cache) Verified(key string) (*Verified, bool) {
	return c.tokens.Get(key)
}

// RememberVerified caches a signature check until the token expires.
func (c *Cache) RememberVerified(key string, v *Verified) {
	if ttl := v.Expiry.Sub(c.clock.Now()); ttl > 0 {
		c.tokens.SetWithTTL(key, v, 1, ttl)
	}
}

// Record returns the record for jti: from the cache, else from the store
// (concurrent misses for one jti share a single store read). A change this
// replica wrote wins over either. Store errors, including
// store.ErrNotFound, are returned as they are.
func (c *Cache) Record(ctx context.Context, jti string) (*store.Record, error) {
	var ch change
	var changed bool
	if c.changes.Load() > 0 {
		c.mu.RLock()
		ch, changed = c.changed[jti]
		c.mu.RUnlock()
	}
	if changed {
		if ch.record == nil {
			return nil, fmt.Errorf("cache: record %q was deleted: %w", jti, store.ErrNotFound)
		}
		return ch.record, nil
	}
	if r, ok := c.records.Get(jti); ok {
		return r, nil
	}
	v, err, _ := c.lookups.Do(jti, func() (any, error) {
		// The read is shared by every caller waiting on this jti, so one
		// caller giving up must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(sharedLookupTimeout, c.recordTTL))
		defer cancel()
		r, err := c.store.GetRecord(ctx, jti)
		if err != nil {
			return nil, err
		}
		c.records.SetWithTTL(jti, r, 1, c.recordTTL)
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*store.Record), nil
}

// Revoked reports, from exact state, whether r is revoked, and by what: its
// record's own mark, then the index. Whether the index is current enough
// to decide is Fresh's to say; a review asks it before anything else
// that needs the store.
func (c *Cache) Revoked(r *store.Record) (store.Scope, bool, error) {
	if r.RevokedAt != nil {
		return store.ScopeJTI, true, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.loaded {
		return "", false, ErrNotLoaded
	}
	if _, ok := c.revoked[r.JTI]; ok {
		return store.ScopeJTI, true, nil
	}
	if mark, ok := c.subjects[r.Subject]; ok && !r.IssuedAt.After(mark.at) {
		return store.ScopeSubject, true, nil
	}
	return "", false, nil
}

// CreateRecord writes r to the store; it is durable when this returns.
func (c *Cache) CreateRecord(ctx context.Context, r *store.Record) error {
	if err := c.store.CreateRecord(ctx, r); err != nil {
		return err
	}
	c.records.SetWithTTL(r.JTI, r, 1, c.recordTTL)
	return nil
}

// UpdateRecord updates the record in the store and, once that is durable,
// makes this replica use the new record at once.
func (c *Cache) UpdateRecord(ctx context.Context, jti string, update func(*store.Record) error) (*store.Record, error) {
	r, err := c.store.UpdateRecord(ctx, jti, update)
	if err != nil {
		return nil, err
	}
	c.remember(jti, r)
	return r, nil
}

// DeleteRecord deletes the record in the store and, once that is durable,
// makes this replica refuse its token at once.
func (c *Cache) DeleteRecord(ctx context.Context, jti string) error {
	if err := c.store.DeleteRecord(ctx, jti); err != nil {
		return err
	}
	c.remember(jti, nil)
	return nil
}

func (c *Cache) remember(jti string, r *store.Record) {
	c.mu.Lock()
	c.changed[jti] = change{record: r, at: c.clock.Now()}
	c.changes.Store(int64(len(c.changed)))
	c.mu.Unlock()
	c.records.Del(jti)
}

// Touch notes that the token jti authenticated at now. Its lastUsedAt is
// written later by FlushTouches, at most once per TouchInterval, so reviews
// never wait for a write.
func (c *Cache) Touch(jti string, now time.Time) {
	c.touchMu.Lock()
	defer c.touchMu.Unlock()
	if last, ok := c.touched[jti]; ok && now.Sub(last) < TouchInterval {
		return
	}
	c.touched[jti] = now
	c.pending[jti] = now
}

// FlushTouches writes the queued lastUsedAt times. Tokens deleted meanwhile
// are skipped.
func (c *Cache) FlushTouches(ctx context.Context) error {
	c.touchMu.Lock()
	pending := c.pending
	c.pending = map[string]time.Time{}
	cutoff := c.clock.Now().Add(-TouchInterval)
	for jti, at := range c.touched {
		if at.Before(cutoff) {
			delete(c.touched, jti)
		}
	}
	c.touchMu.Unlock()
	c.mu.Lock()
	c.forgetChangesLocked(c.clock.Now())
	c.mu.Unlock()
	var errs []error
	for jti, at := range pending {
		used := at.Truncate(time.Second)
		_, err := c.store.UpdateRecord(ctx, jti, func(r *store.Record) error {
			if r.User != nil {
				r.User.LastUsedAt = &used
			}
			return nil
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Revoke writes rev to the store and, once it is durable, applies it to the
// index, so this replica refuses the tokens before Revoke returns. A subject
// mark without an expiry gets one: SubjectMarkLifetime after it.
func (c *Cache) Revoke(ctx context.Context, rev *store.Revocation) error {
	if rev.Scope == store.ScopeSubject && rev.ExpiresAt == nil && c.markLifetime > 0 {
		exp := rev.Created.Add(c.markLifetime)
		rev.ExpiresAt = &exp
	}
	if err := c.store.Revoke(ctx, rev); err != nil {
		return err
	}
	c.mu.Lock()
	learned := c.applyLocked(rev)
	c.mu.Unlock()
	if rev.Scope == store.ScopeJTI {
		c.records.Del(rev.Target)
	}
	if learned {
		c.revocations.Send(rev)
	}
	if c.onRevoke != nil {
		c.onRevoke(ctx, rev)
	}
	return nil
}

// OnRevoke has f told of every revocation made through this replica, once
// durable, for metrics and audit. Call it before serving.
func (c *Cache) OnRevoke(f func(ctx context.Context, rev *store.Revocation)) { c.onRevoke = f }

// HitRatio is the share of verified-token lookups the cache answered.
func (c *Cache) HitRatio() float64 { return c.tokens.Metrics.Ratio() }

// Hits counts verified-token lookups the cache answered.
func (c *Cache) Hits() float64 { return float64(c.tokens.Metrics.Hits()) }

// Misses counts verified-token lookups the cache could not answer.
func (c *Cache) Misses() float64 { return float64(c.tokens.Metrics.Misses()) }

// Evictions counts entries ristretto evicted from both caches.
func (c *Cache) Evictions() float64 {
	return float64(c.tokens.Metrics.KeysEvicted() + c.records.Metrics.KeysEvicted())
}

// SyncAge is how long ago the store's watch last proved this replica
// current (0 for a store without watches).
func (c *Cache) SyncAge() time.Duration {
	if c.watcher == nil {
		return 0
	}
	return c.clock.Now().Sub(time.Unix(0, c.lastSync.Load()))
}

// PurgeExpired purges expired records from the store and drops index
// entries whose tokens can no longer be valid.
func (c *Cache) PurgeExpired(ctx context.Context) (int, error) {
	now := c.clock.Now()
	n, err := c.store.PurgeExpired(ctx, now)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	for jti, exp := range c.revoked {
		if !exp.IsZero() && exp.Before(now) {
			delete(c.revoked, jti)
		}
	}
	for subject, m := range c.subjects {
		if !m.expires.IsZero() && m.expires.Before(now) {
			delete(c.subjects, subject)
		}
	}
	c.forgetChangesLocked(now)
	c.mu.Unlock()
	return n, nil
}

// forgetChangesLocked drops changes older than twice the record TTL: every
// cached copy from before them has expired by then.
func (c *Cache) forgetChangesLocked(now time.Time) {
	for jti, ch := range c.changed {
		if now.Sub(ch.at) > 2*c.recordTTL {
			delete(c.changed, jti)
		}
	}
	c.changes.Store(int64(len(c.changed)))
}

// Wait blocks until pending ristretto writes are applied; for tests and
// benchmarks that need a warm cache.
func (c *Cache) Wait() {
	c.tokens.Wait()
	c.records.Wait()
}

// Revocation returns the stored revocation named name (store.ErrNotFound if none).
func (c *Cache) Revocation(ctx context.Context, name string) (*store.Revocation, error) {
	return c.store.GetRevocation(ctx, name)
}

// Revocations returns every stored revocation.
func (c *Cache) Revocations(ctx context.Context) ([]*store.Revocation, error) {
	return c.store.ListRevocations(ctx)
}

// GetRecordByName reads the user token record named name from the store.
func (c *Cache) GetRecordByName(ctx context.Context, name string) (*store.Record, error) {
	return c.store.GetRecordByName(ctx, name)
}

// ListRecords lists records from the store.
func (c *Cache) ListRecords(ctx context.Context, opts store.ListOptions) ([]*store.Record, error) {
	return c.store.ListRecords(ctx, opts)
}
