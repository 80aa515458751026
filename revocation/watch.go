package revocation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/wait"

	"portcullis.dev/portcullis/store"
)

// ErrStale means the store's watch has not proven this replica current
// within the staleness bound: reviews fail closed until it has.
var ErrStale = errors.New("revocation: state is staler than the bound")

// Fresh returns nil when this replica's view of revocations is within the
// staleness bound (always, for a store without watches).
func (a *Authority) Fresh() error {
	if a.watcher == nil {
		return nil
	}
	last := time.Unix(0, a.lastSync.Load())
	if age := a.clock.Now().Sub(last); age > a.opts.Staleness {
		return fmt.Errorf("%w: last sync %s ago, bound %s", ErrStale, age.Round(time.Millisecond), a.opts.Staleness)
	}
	return nil
}

// SyncAge is how long ago the store's watch last proved this replica
// current (0 for a store without watches).
func (a *Authority) SyncAge() time.Duration {
	if a.watcher == nil {
		return 0
	}
	return a.clock.Now().Sub(time.Unix(0, a.lastSync.Load()))
}

// Run keeps the authority current until ctx is done: it follows the
// store's watch (shared stores), purges expired state every PurgeInterval
// and writes queued lastUsedAt times every FlushInterval, and once more
// when ctx is done.
func (a *Authority) Run(ctx context.Context) {
	var g errgroup.Group
	g.Go(func() error { a.follow(ctx); return nil })
	g.Go(func() error {
		wait.Until(func() {
			n, err := a.PurgeExpired(ctx)
			if err != nil {
				a.log.Warn("purge of expired records failed", "err", err)
				return
			}
			a.log.Info("purged expired records", "records", n)
		}, a.opts.PurgeInterval, ctx.Done())
		return nil
	})
	g.Go(func() error {
		wait.Until(func() {
			if err := a.FlushTouches(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("writing lastUsedAt failed", "err", err)
			}
		}, a.opts.FlushInterval, ctx.Done())
		if err := a.FlushTouches(context.WithoutCancel(ctx)); err != nil {
			a.log.Warn("writing lastUsedAt failed", "err", err)
		}
		return nil
	})
	_ = g.Wait()
}

// follow keeps the index current with changes made through any replica: it
// watches the store, reloads the revocations once the watch is established
// (so nothing falls between), applies every event, and starts over, after
// a jittered backoff, when the watch breaks (compaction, lost quorum,
// restart). Until the watch proves itself again, Fresh fails after the
// staleness bound. For a store without watches it returns at once.
func (a *Authority) follow(ctx context.Context) {
	if a.watcher == nil {
		return
	}
	fresh := wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 5 * time.Second}
	backoff := fresh
	for ctx.Err() == nil {
		synced, err := a.followOnce(ctx)
		if ctx.Err() == nil {
			a.log.Warn("store watch broke; resyncing", "err", err)
		}
		// A watch that synced was healthy: the next break starts the
		// backoff over, or a replica that rode out an outage would wait
		// the cap (as long as the staleness bound) after the next one.
		if synced {
			backoff = fresh
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}

// followOnce runs one watch until it breaks. A watch that stays silent (not
// even progress) for three progress intervals, or half the staleness bound
// if that is shorter, counts as broken too: a stream to a member that went
// away may neither close nor resume, and giving up early leaves the resync
// time to finish within the bound.
// It reports whether the watch synced before it broke.
func (a *Authority) followOnce(ctx context.Context) (synced bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := a.watcher.Watch(wctx)
	if err != nil {
		return false, err
	}
	quiet := min(3*store.ProgressInterval, a.opts.Staleness/2)
	silence := time.NewTimer(quiet)
	defer silence.Stop()
	for {
		var e store.Event
		select {
		case <-silence.C:
			return synced, fmt.Errorf("revocation: store watch silent for %s", quiet)
		case ev, ok := <-events:
			if !ok {
				return synced, errors.New("revocation: watch closed")
			}
			e = ev
		}
		silence.Reset(quiet)
		switch e.Type {
		case store.EventSynced:
			if err := a.Load(ctx); err != nil {
				return synced, err
			}
			// Changes missed while no watch ran may sit in the record cache.
			a.records.Clear()
			synced = true
			a.lastSync.Store(a.clock.Now().UnixNano())
		case store.EventRevocation:
			// Made through another replica: this replica's watchers
			// (offline VNC proxies) must learn of it too.
			a.learn(e.Revocation)
		case store.EventRecordChanged:
			a.remember(e.JTI, e.Record)
		case store.EventRecordDeleted:
			a.remember(e.JTI, nil)
		case store.EventProgress:
			if synced {
				a.lastSync.Store(a.clock.Now().UnixNano())
			}
		}
	}
}
