// Package fanout delivers values to many watchers without ever making the
// sender wait: a watcher that falls a buffer behind is closed, as
// kube-apiserver's watch cache terminates slow watchers, and its client
// lists again. Writers (token creates, revocations) must never block on a
// client that stopped reading.
package fanout

import (
	"errors"
	"sync"
)

// ErrClosed is returned by Watch after Close.
var ErrClosed = errors.New("fanout: closed")

// Broadcaster sends every value to every watcher that keeps up.
type Broadcaster[T any] struct {
	buffer int

	mu       sync.Mutex
	watchers map[*Watcher[T]]struct{}
	closed   bool
}

// New returns a Broadcaster whose watchers may fall buffer values behind
// before they are closed.
func New[T any](buffer int) *Broadcaster[T] {
	if buffer <= 0 {
		buffer = 1
	}
	return &Broadcaster[T]{buffer: buffer, watchers: map[*Watcher[T]]struct{}{}}
}

// Watcher receives the values sent after it was made, preceded by the
// initial ones it was made with.
type Watcher[T any] struct {
	b  *Broadcaster[T]
	ch chan T
	// overflowed is set (under b.mu) when the watcher was closed for
	// falling behind.
	overflowed bool
}

// Watch returns a new watcher that first receives initial.
func (b *Broadcaster[T]) Watch(initial []T) (*Watcher[T], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	w := &Watcher[T]{b: b, ch: make(chan T, len(initial)+b.buffer)}
	for _, v := range initial {
		w.ch <- v
	}
	b.watchers[w] = struct{}{}
	return w, nil
}

// Send delivers v to every watcher without blocking; a watcher whose buffer
// is full is closed instead.
func (b *Broadcaster[T]) Send(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for w := range b.watchers {
		select {
		case w.ch <- v:
		default:
			w.overflowed = true
			delete(b.watchers, w)
			close(w.ch)
		}
	}
}

// Len is the number of open watchers.
func (b *Broadcaster[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.watchers)
}

// Close closes every watcher; later Watch calls fail.
func (b *Broadcaster[T]) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for w := range b.watchers {
		delete(b.watchers, w)
		close(w.ch)
	}
}

// C is the channel of values; it is closed when the watcher is stopped,
// falls behind, or the broadcaster closes.
func (w *Watcher[T]) C() <-chan T { return w.ch }

// Stop closes the watcher. Stopping twice is harmless.
func (w *Watcher[T]) Stop() {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	if _, ok := w.b.watchers[w]; ok {
		delete(w.b.watchers, w)
		close(w.ch)
	}
}

// Overflowed reports whether the watcher was closed for falling behind.
func (w *Watcher[T]) Overflowed() bool {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.overflowed
}
