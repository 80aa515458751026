package revocation

import (
	"context"
	"errors"
	"sync"
	"time"

	"portcullis.dev/portcullis/store"
)

// TouchInterval is the most often a token's lastUsedAt is written.
const TouchInterval = time.Minute

// lastUsed batches lastUsedAt writes off the review path.
type lastUsed struct {
	mu      sync.Mutex
	touched map[string]time.Time // jti -> last lastUsedAt written or queued
	pending map[string]time.Time // jti -> lastUsedAt to write
}

// Touch notes that the token jti authenticated at now. Its lastUsedAt is
// written later by FlushTouches, at most once per TouchInterval, so reviews
// never wait for a write.
func (a *Authority) Touch(jti string, now time.Time) {
	l := &a.lastUsed
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.touched[jti]; ok && now.Sub(last) < TouchInterval {
		return
	}
	l.touched[jti] = now
	l.pending[jti] = now
}

// FlushTouches writes the queued lastUsedAt times. Tokens deleted meanwhile
// are skipped.
func (a *Authority) FlushTouches(ctx context.Context) error {
	l := &a.lastUsed
	l.mu.Lock()
	pending := l.pending
	l.pending = map[string]time.Time{}
	cutoff := a.clock.Now().Add(-TouchInterval)
	for jti, at := range l.touched {
		if at.Before(cutoff) {
			delete(l.touched, jti)
		}
	}
	l.mu.Unlock()
	a.mu.Lock()
	a.forgetChangesLocked(a.clock.Now())
	a.mu.Unlock()
	var errs []error
	for jti, at := range pending {
		used := at.Truncate(time.Second)
		_, err := a.store.UpdateRecord(ctx, jti, func(r *store.Record) error {
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
