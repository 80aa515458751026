package bolt

import (
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// maxGroup bounds the writes one transaction commits.
const maxGroup = 1000

// gatherWindow is how long the committer lets writes gather after a commit
// that held more than one: under concurrent load a commit's fixed cost (two
// fdatasyncs, the meta page, the freelist) is then shared by more writes.
// Measured with 16 minting clients on 2 cores: groups of 2.3 writes without
// it, 4 with it, and about a quarter more mints a second. A lone writer
// never waits.
const gatherWindow = 500 * time.Microsecond

// groupCommit commits concurrent writes in as few transactions as the disk
// allows: one goroutine commits whatever is waiting, and the writes that
// arrive during that commit's fsync go into the next one. Unlike bbolt's
// Batch it waits for no timer: a lone write commits at once, and under load
// a transaction holds every write that arrived while the last one synced.
//
// As with Batch, a write's function may run more than once (when another
// write in its group fails, the group runs again without it), so it may only
// read and write inside tx. A function that fails runs once more in a
// transaction of its own, whose error its caller gets.
type groupCommit struct {
	db *bbolt.DB

	mu      sync.Mutex
	queue   []*write
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
}

type write struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

func newGroupCommit(db *bbolt.DB) *groupCommit {
	g := &groupCommit{db: db, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go g.run()
	return g
}

// do runs fn in a write transaction and returns once that transaction is
// durable, or failed.
func (g *groupCommit) do(fn func(*bbolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return g.db.Update(fn) // fails: the file is closed or closing
	}
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
	return <-w.done
}

// close commits what is queued and stops the committing goroutine.
func (g *groupCommit) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	<-g.stopped
}

func (g *groupCommit) run() {
	defer close(g.stopped)
	last := 0
	for range g.wake {
		for {
			if last > 1 {
				time.Sleep(gatherWindow)
			}
			g.mu.Lock()
			n := min(len(g.queue), maxGroup)
			group := g.queue[:n:n]
			g.queue = g.queue[n:]
			closed := g.closed && len(g.queue) == 0
			g.mu.Unlock()
			if last = n; n > 0 {
				g.commit(group)
			}
			if closed {
				return
			}
			if n == 0 {
				break
			}
		}
	}
}

// commit runs the group in one transaction. A function that fails is taken
// out and run alone; the rest run again together.
func (g *groupCommit) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i, w := range group {
				if err := call(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range group {
				w.done <- err
			}
			return
		}
		w := group[failed]
		group = append(group[:failed:failed], group[failed+1:]...)
		w.done <- g.db.Update(func(tx *bbolt.Tx) error { return call(w.fn, tx) })
	}
}

// call runs fn, turning a panic into its error so that one bad write cannot
// stop the committer that every other write waits on.
func call(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bolt: write panicked: %v", r)
		}
	}()
	return fn(tx)
}
