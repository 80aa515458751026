package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"portcullis.dev/portcullis/store"
)

// ErrStale means the store's watch has not proven this replica current
// within the staleness bound: reviews fail closed until it has.
var ErrStale = errors.New("cache: revocation state is staler than the bound")

// Fresh returns nil when this replica's view of revocations is within the
// staleness bound (always, for a store without watches).
func (c *Cache) Fresh() error {
	if c.watcher == nil {
		return nil
	}
	last := time.Unix(0, c.lastSync.Load())
	if age := c.clock.Now().Sub(last); age > c.recordTTL {
		return fmt.Errorf("%w: last sync %s ago, bound %s", ErrStale, age.Round(time.Millisecond), c.recordTTL)
	}
	return nil
}

// Run keeps the cache current with changes made through any replica: it
// watches the store, reloads the revocations once the watch is established
// (so nothing falls between), applies every event, and starts over when the
// watch breaks (compaction, lost quorum, restart). Until the watch proves
// itself again, Fresh fails after the staleness bound. It returns when ctx
// is done; for a store without watches it returns at once.
func (c *Cache) Run(ctx context.Context, log *slog.Logger) {
	if c.watcher == nil {
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if err := c.follow(ctx); ctx.Err() == nil {
			log.Warn("store watch broke; resyncing", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow runs one watch until it breaks. A watch that stays silent (not
// even progress) for three progress intervals, or half the staleness bound
// if that is shorter, counts as broken too: a stream to a member that went
// away may neither close nor resume, and giving up early leaves the resync
// time to finish within the bound.
func (c *Cache) follow(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.watcher.Watch(wctx)
	if err != nil {
		return err
	}
	synced := false
	quiet := min(3*store.ProgressInterval, c.recordTTL/2)
	silence := time.NewTimer(quiet)
	defer silence.Stop()
	for {
		var e store.Event
		select {
		case <-silence.C:
			return fmt.Errorf("cache: store watch silent for %s", quiet)
		case ev, ok := <-events:
			if !ok {
				return errors.New("cache: watch closed")
			}
			e = ev
		}
		silence.Reset(quiet)
		switch e.Type {
		case store.EventSynced:
			if err := c.Load(ctx); err != nil {
				return err
			}
			// Changes missed while no watch ran may sit in ristretto.
			c.records.Clear()
			c.tokens.Clear()
			synced = true
			c.lastSync.Store(c.clock.Now().UnixNano())
		case store.EventRevocation:
			c.mu.Lock()
			learned := c.applyLocked(e.Revocation)
			c.mu.Unlock()
			if e.Revocation.Scope == store.ScopeJTI {
				c.records.Del(e.Revocation.Target)
			}
			// Made through another replica: this replica's watchers
			// (offline VNC proxies) must learn of it too.
			if learned {
				c.revocations.Send(e.Revocation)
			}
		case store.EventRecordChanged:
			c.remember(e.JTI, e.Record)
		case store.EventRecordDeleted:
			c.remember(e.JTI, nil)
		case store.EventProgress:
			if synced {
				c.lastSync.Store(c.clock.Now().UnixNano())
			}
		}
	}
}
