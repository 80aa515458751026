package bolt

import (
	"context"
	"sync"
	"time"

	"portcullis.dev/portcullis/store"
)

// watchers fans the store's own writes out to watchers. bbolt has one
// writer, this process, so the watch is exact and never lags.
type watchers[T any] struct {
	mu   sync.Mutex
	subs map[chan T]struct{}
}

// subscribe adds a watcher whose channel starts with first.
func (w *watchers[T]) subscribe(size int, first T) chan T {
	ch := make(chan T, size)
	ch <- first
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs == nil {
		w.subs = map[chan T]struct{}{}
	}
	w.subs[ch] = struct{}{}
	return ch
}

// unsubscribe closes ch unless publish already did.
func (w *watchers[T]) unsubscribe(ch chan T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[ch]; ok {
		delete(w.subs, ch)
		close(ch)
	}
}

func (w *watchers[T]) publish(e T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- e:
		default:
			// A watcher that cannot keep up loses its watch and resyncs.
			delete(w.subs, ch)
			close(ch)
		}
	}
}

// Watch implements store.Watcher.
func (s *Store) Watch(ctx context.Context) (<-chan store.Event, error) {
	ch := s.watch.subscribe(1024, store.Event{Type: store.EventSynced})
	go func() {
		t := time.NewTicker(store.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.watch.unsubscribe(ch)
				return
			case <-t.C:
				s.watch.publishTo(ch, store.Event{Type: store.EventProgress})
			}
		}
	}()
	return ch, nil
}

// publishTo sends e to one watcher if it is still subscribed.
func (w *watchers[T]) publishTo(ch chan T, e T) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[ch]; !ok {
		return
	}
	select {
	case ch <- e:
	default:
	}
}
