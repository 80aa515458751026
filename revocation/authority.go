// Package revocation is Portcullis' revocation authority: the exact index
// of revoked tokens and subjects that every review consults, kept current
// with the store (written through here, and followed by a watch when other
// replicas write too), the records reviews read, with this replica's own
// writes winning over cached copies, the typed stream of revocations that
// offline verifiers follow, and the loops that purge expired state and
// write lastUsedAt. The ristretto record cache in front of the store is an
// accelerator only: it never holds the only copy of a decision.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/internal/fanout"
	"portcullis.dev/portcullis/store"
)

// Defaults of Options.
const (
	// DefaultStaleness is the default record TTL and staleness bound.
	DefaultStaleness = 30 * time.Second
	// DefaultPurgeInterval is how often expired state is purged.
	DefaultPurgeInterval = time.Hour
	// DefaultFlushInterval is how often queued lastUsedAt times are written.
	DefaultFlushInterval = 10 * time.Second
)

// Options configures an Authority.
type Options struct {
	// MaxEntries bounds the record cache.
	MaxEntries int64
	// Staleness is how long a record is reused before the store is asked
	// again: the staleness bound for record changes made elsewhere, and,
	// for a shared store, how far the watch may fall behind before this
	// replica decides nothing (default DefaultStaleness).
	Staleness time.Duration
	// Shared says other replicas write to the store too: the authority
	// then follows the store's watch (Run) and fails closed when it falls
	// behind Staleness. A store only this process writes (bbolt) needs
	// neither.
	Shared bool
	// SubjectMarkLifetime is how long a subject mark must be kept: the
	// longest lifetime any front door can grant, plus the clock leeway.
	// After it no token minted before the mark can still be alive, so the
	// mark is given that expiry and purged with it (0: kept for ever).
	SubjectMarkLifetime time.Duration
	// PurgeInterval and FlushInterval pace Run's loops (defaults above).
	PurgeInterval, FlushInterval time.Duration
	// OnRevoke, when set, is told of every revocation made through this
	// replica once durable, for metrics and audit.
	OnRevoke func(ctx context.Context, rev *store.Revocation)
	// Clock is the time source; nil means the real clock.
	Clock clock.PassiveClock
	// Logger gets the loops' warnings; nil discards them.
	Logger *slog.Logger
}

// Authority decides, from exact state, whether a token is revoked; every
// writer of records and revocations goes through it.
type Authority struct {
	store store.Store
	opts  Options
	clock clock.PassiveClock
	log   *slog.Logger

	records    *cache.Cache[*store.Record]
	lookups    singleflight.Group
	groupLists *sharedLists // the group lists of cached records

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

	lastUsed lastUsed
}

// subjectMark is the newest subject revocation: tokens of the subject issued
// at or before at are revoked; after expires (zero: never) no such token
// can be alive and the mark can go.
type subjectMark struct {
	at, expires time.Time
}

// ErrNotLoaded means the revocation index was not loaded from the store yet,
// so no review can be decided.
var ErrNotLoaded = errors.New("revocation: index not loaded")

// New returns an authority over s. Call Load before serving reviews.
func New(s store.Store, opts Options) (*Authority, error) {
	if opts.Staleness <= 0 {
		opts.Staleness = DefaultStaleness
	}
	if opts.PurgeInterval <= 0 {
		opts.PurgeInterval = DefaultPurgeInterval
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var watcher store.Watcher
	if opts.Shared {
		w, ok := s.(store.Watcher)
		if !ok {
			return nil, fmt.Errorf("revocation: a shared store must implement store.Watcher, %T does not", s)
		}
		watcher = w
	}
	records, err := cache.New[*store.Record](opts.MaxEntries)
	if err != nil {
		return nil, err
	}
	return &Authority{
		store:       s,
		opts:        opts,
		clock:       opts.Clock,
		log:         opts.Logger,
		records:     records,
		groupLists:  newSharedLists(maxSharedLists),
		revoked:     map[string]time.Time{},
		subjects:    map[string]subjectMark{},
		changed:     map[string]change{},
		revocations: fanout.New[*store.Revocation](watchBuffer),
		watcher:     watcher,
		lastUsed:    lastUsed{touched: map[string]time.Time{}, pending: map[string]time.Time{}},
	}, nil
}

// Close stops the record cache and the revocation watchers.
func (a *Authority) Close() {
	a.records.Close()
	a.revocations.Close()
}

// watchBuffer is how many revocations a watcher may fall behind before it
// is closed (its client then lists again).
const watchBuffer = 256

// Watch sends every revocation this replica learns of from now on, made
// through it or through another replica, each once it is durable. A
// watcher that falls behind is closed.
func (a *Authority) Watch() (*fanout.Watcher[*store.Revocation], error) {
	return a.revocations.Watch(nil)
}

// Load reads every revocation from the store into the exact index. Reviews
// fail with ErrNotLoaded until it succeeded once. Revocations it finds that
// the index did not hold (made elsewhere while no watch ran) go to the
// watchers.
func (a *Authority) Load(ctx context.Context) error {
	revs, err := a.store.ListRevocations(ctx)
	if err != nil {
		return fmt.Errorf("revocation: load: %w", err)
	}
	var learned []*store.Revocation
	a.mu.Lock()
	for _, rev := range revs {
		if a.applyLocked(rev) {
			learned = append(learned, rev)
		}
	}
	a.loaded = true
	a.lastSync.Store(a.clock.Now().UnixNano())
	a.mu.Unlock()
	for _, rev := range learned {
		a.revocations.Send(rev)
	}
	return nil
}

// applyLocked adds rev to the index and reports whether it was new to it.
func (a *Authority) applyLocked(rev *store.Revocation) bool {
	switch rev.Scope {
	case store.ScopeJTI:
		var exp time.Time
		if rev.ExpiresAt != nil {
			exp = *rev.ExpiresAt
		}
		_, known := a.revoked[rev.Target]
		a.revoked[rev.Target] = exp
		return !known
	case store.ScopeSubject:
		if cur, ok := a.subjects[rev.Target]; !ok || rev.Created.After(cur.at) {
			m := subjectMark{at: rev.Created}
			if rev.ExpiresAt != nil {
				m.expires = *rev.ExpiresAt
			}
			a.subjects[rev.Target] = m
			return true
		}
	}
	return false
}

// learn applies rev, learned of through this replica or the store's watch,
// and tells the watchers if it was new.
func (a *Authority) learn(rev *store.Revocation) {
	a.mu.Lock()
	learned := a.applyLocked(rev)
	a.mu.Unlock()
	if rev.Scope == store.ScopeJTI {
		a.records.Del(rev.Target)
	}
	if learned {
		a.revocations.Send(rev)
	}
}

// Revoked reports, from exact state, whether r is revoked, and by what: its
// record's own mark, then the index. Whether the index is current enough
// to decide is Fresh's to say; a review asks it before anything else
// that needs the store.
func (a *Authority) Revoked(r *store.Record) (store.Scope, bool, error) {
	if r.RevokedAt != nil {
		return store.ScopeJTI, true, nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.loaded {
		return "", false, ErrNotLoaded
	}
	if _, ok := a.revoked[r.JTI]; ok {
		return store.ScopeJTI, true, nil
	}
	if mark, ok := a.subjects[r.Subject]; ok && !r.IssuedAt.After(mark.at) {
		return store.ScopeSubject, true, nil
	}
	return "", false, nil
}

// Revoke writes rev to the store and, once it is durable, applies it to the
// index, so this replica refuses the tokens before Revoke returns. A subject
// mark without an expiry gets one: SubjectMarkLifetime after it.
func (a *Authority) Revoke(ctx context.Context, rev *store.Revocation) error {
	if rev.Scope == store.ScopeSubject && rev.ExpiresAt == nil && a.opts.SubjectMarkLifetime > 0 {
		exp := rev.Created.Add(a.opts.SubjectMarkLifetime)
		rev.ExpiresAt = &exp
	}
	if err := a.store.Revoke(ctx, rev); err != nil {
		return err
	}
	a.learn(rev)
	if a.opts.OnRevoke != nil {
		a.opts.OnRevoke(ctx, rev)
	}
	return nil
}

// Revocation returns the stored revocation named name (store.ErrNotFound if none).
func (a *Authority) Revocation(ctx context.Context, name string) (*store.Revocation, error) {
	return a.store.GetRevocation(ctx, name)
}

// Revocations returns every stored revocation.
func (a *Authority) Revocations(ctx context.Context) ([]*store.Revocation, error) {
	return a.store.ListRevocations(ctx)
}

// PurgeExpired purges expired records from the store and drops index
// entries whose tokens can no longer be valid.
func (a *Authority) PurgeExpired(ctx context.Context) (int, error) {
	now := a.clock.Now()
	n, err := a.store.PurgeExpired(ctx, now)
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	for jti, exp := range a.revoked {
		if !exp.IsZero() && exp.Before(now) {
			delete(a.revoked, jti)
		}
	}
	for subject, m := range a.subjects {
		if !m.expires.IsZero() && m.expires.Before(now) {
			delete(a.subjects, subject)
		}
	}
	a.forgetChangesLocked(now)
	a.mu.Unlock()
	return n, nil
}

// RecordCacheStats returns the record cache's counters.
func (a *Authority) RecordCacheStats() cache.Stats { return a.records.Stats() }

// Wait blocks until pending record cache writes are applied; for tests and
// benchmarks that need a warm cache.
func (a *Authority) Wait() { a.records.Wait() }
