package bolt

import (
	"context"
	"sync"
	"time"

	"portcullis.dev/portcullis/store"
)

// watchers fans the store's own writes out to watchers. bbolt has one
// writer, this process, so the watch is exact and never lags.
type watchers struct {
	mu   sync.Mutex
	subs map[chan store.Event]struct{}
}

func (w *watchers) publish(e store.Event) {
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
	ch := make(chan store.Event, 1024)
	ch <- store.Event{Type: store.EventSynced}
	s.watch.mu.Lock()
	if s.watch.subs == nil {
		s.watch.subs = map[chan store.Event]struct{}{}
	}
	s.watch.subs[ch] = struct{}{}
	s.watch.mu.Unlock()
	go func() {
		t := time.NewTicker(store.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.watch.mu.Lock()
				if _, ok := s.watch.subs[ch]; ok {
					delete(s.watch.subs, ch)
					close(ch)
				}
				s.watch.mu.Unlock()
				return
			case <-t.C:
				s.watch.publishTo(ch, store.Event{Type: store.EventProgress})
			}
		}
	}()
	return ch, nil
}

// publishTo sends e to one watcher if it is still subscribed.
func (w *watchers) publishTo(ch chan store.Event, e store.Event) {
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
