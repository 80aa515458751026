package bolt

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// maxGroup bounds the writes one round of the committer takes.
const maxGroup = 1000

// gatherWindow is how long the committer lets new records gather after a
// round that held more than one: under concurrent load one log sync is then
// shared by more of them. A lone writer never waits, and other writes
// (revocations, key ring swaps) never make the next round wait. Measured with 16
// minting clients on 2 cores (docs/scale.md): a sync costs the machine CPU
// as well as time, so larger groups mint faster up to a pause of about
// 1 ms (4.5 records a sync); past it, clients sit idle.
const gatherWindow = time.Millisecond

// New records wait in the open transaction (and in the log) until there are
// maxPending of them or flushInterval has passed since the first, as
// etcd's backend batches its commits (by time and count). The count is
// kept small because every page a commit rewrites is freed by it, and
// bbolt writes its whole freelist at every later commit: commits of 4,096
// records left a freelist of 6,300 pages after a bulk load of 1M records
// and doubled the cost of every commit after it; commits of 512 leave
// about 700, as many as the group commit did before the log.
const (
	maxPending    = 512
	flushInterval = 100 * time.Millisecond
)

var (
	bucketMeta     = []byte("meta")
	metaLogApplied = []byte("log-applied") // index of the last log entry the file holds
)

// committer is the store's one writer. A new record (create) is checked
// and written in a write transaction it keeps open, appended to the log and
// acknowledged once the log is synced: a group of them costs one append and
// one fdatasync. That transaction is committed, with the index of the last
// entry it holds, every flushInterval or maxPending records; until then the
// records are read from pending. Every other write (fn) commits what is
// pending first, then runs in a transaction of its own that is durable
// before it is acknowledged, as bbolt's Batch would.
//
// As with Batch, an fn may run more than once (when another fn in its
// group fails, the group runs again without it), so it may only read and
// write inside tx. An fn that fails runs once more in a transaction of its
// own, whose error its caller gets.
type committer struct {
	db         *bbolt.DB
	log        *recordLog
	flushEvery time.Duration

	mu      sync.Mutex
	queue   []*write
	closed  bool
	flush   bool // on close: commit what is pending (false only to simulate a crash)
	wake    chan struct{}
	stopped chan struct{}

	// Owned by the committing goroutine.
	tx       *bbolt.Tx // holds the pending records; nil when none are
	txOpened time.Time

	// failure is set once the log or the file failed, by the committing
	// goroutine: every later write fails with it, and Ready reads it from
	// other goroutines.
	failure atomic.Pointer[error]

	// pendingMu orders readers with a commit that empties pending: a
	// reader holds it across its read transaction.
	pendingMu sync.RWMutex
	pending   *pendingRecords
}

type write struct {
	fn     func(*bbolt.Tx) error
	create *newRecord
	done   chan error
}

func newCommitter(db *bbolt.DB, log *recordLog, flushEvery time.Duration) *committer {
	c := &committer{db: db, log: log, flushEvery: flushEvery, flush: true, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
		pending: newPendingRecords()}
	go c.run()
	return c
}

// do runs fn in a write transaction and returns once that transaction is
// durable, or failed.
func (c *committer) do(fn func(*bbolt.Tx) error) error {
	return c.submit(&write{fn: fn, done: make(chan error, 1)})
}

// create writes a new record and returns once it is durable: logged, and
// in the file at a later commit.
func (c *committer) create(n *newRecord) error {
	return c.submit(&write{create: n, done: make(chan error, 1)})
}

func (c *committer) submit(w *write) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return bberrors.ErrDatabaseNotOpen
	}
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
	return <-w.done
}

// close commits what is queued and pending and stops the committer; with
// flush false it drops what is pending instead, as a crash would.
func (c *committer) close(flush bool) {
	c.mu.Lock()
	c.closed, c.flush = true, flush
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.stopped
}

func (c *committer) run() {
	defer close(c.stopped)
	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	armed := false
	last := 0
	for {
		select {
		case <-c.wake:
		case <-flushTimer.C:
			armed = false
			c.commitPending()
			continue
		}
		for {
			if last > 1 {
				time.Sleep(gatherWindow)
			}
			c.mu.Lock()
			n := min(len(c.queue), maxGroup)
			group := c.queue[:n:n]
			c.queue = c.queue[n:]
			closing := c.closed && len(c.queue) == 0
			flush := c.flush
			c.mu.Unlock()
			last = 0
			if n > 0 {
				last = c.apply(group)
			}
			if c.tx != nil && time.Since(c.txOpened) >= c.flushEvery {
				c.commitPending() // writes never stopped coming long enough for the timer
			}
			if closing {
				if flush {
					c.commitPending()
				}
				if c.tx != nil { // not committed: a crash, or a failed log or file
					c.tx.Rollback()
				}
				return
			}
			if n == 0 {
				break
			}
		}
		if c.tx != nil && !armed {
			flushTimer.Reset(c.flushEvery)
			armed = true
		}
	}
}

// apply takes one round of writes, the new records first, then the rest;
// it returns how many were new records.
func (c *committer) apply(group []*write) int {
	var creates, others []*write
	for _, w := range group {
		if w.create != nil {
			creates = append(creates, w)
		} else {
			others = append(others, w)
		}
	}
	if len(creates) > 0 {
		c.applyCreates(creates)
	}
	if len(others) == 0 {
		return len(creates)
	}
	if err := c.commitPending(); err != nil {
		for _, w := range others {
			w.done <- err
		}
		return len(creates)
	}
	c.commit(others)
	return len(creates)
}

// applyCreates checks and writes the new records into the open
// transaction, logs those that passed and acknowledges them.
func (c *committer) applyCreates(creates []*write) {
	if c.err() == nil && c.tx == nil {
		tx, err := c.db.Begin(true)
		if err != nil {
			c.fail(err)
		}
		c.tx, c.txOpened = tx, time.Now()
	}
	if err := c.err(); err != nil {
		for _, w := range creates {
			w.done <- err
		}
		return
	}
	var written []*write
	for _, w := range creates {
		if err := call(w.create.check, c.tx); err != nil {
			w.done <- err
			continue
		}
		if err := call(w.create.put, c.tx); err != nil {
			// The transaction may hold part of this record: start it
			// again without it.
			c.rebuild(written)
			w.done <- err
			continue
		}
		written = append(written, w)
	}
	if len(written) == 0 {
		return
	}
	data := make([][]byte, len(written))
	for i, w := range written {
		data[i] = w.create.data
	}
	if _, err := c.log.append(data); err != nil {
		// Not durable: not acknowledged, and not left in the file.
		c.fail(err)
		for _, w := range written {
			w.done <- err
		}
		return
	}
	c.pendingMu.Lock()
	for _, w := range written {
		c.pending.add(w.create)
	}
	count := c.pending.len()
	c.pendingMu.Unlock()
	for _, w := range written {
		w.done <- nil
	}
	if count >= maxPending {
		c.commitPending()
	}
}

// rebuild starts the open transaction again with the pending records and
// the records written this round (each of them passed its check).
func (c *committer) rebuild(written []*write) {
	c.tx.Rollback()
	c.tx = nil
	tx, err := c.db.Begin(true)
	if err != nil {
		c.fail(err)
		return
	}
	c.tx = tx
	for _, n := range c.pending.order {
		if err := n.put(tx); err != nil {
			c.fail(err)
			return
		}
	}
	for _, w := range written {
		if err := w.create.put(tx); err != nil {
			c.fail(err)
			return
		}
	}
}

// commitPending commits the open transaction with the index of the last
// entry it holds; the pending records are then read from the file.
func (c *committer) commitPending() error {
	if err := c.err(); err != nil {
		return err
	}
	if c.tx == nil {
		return nil
	}
	applied := binary.BigEndian.AppendUint64(nil, c.log.last)
	if err := c.tx.Bucket(bucketMeta).Put(metaLogApplied, applied); err != nil {
		return c.fail(err)
	}
	err := c.tx.Commit()
	c.tx = nil
	if err != nil {
		// The records are durable in the log and readable from pending;
		// a restart replays them. Writing on would split the two.
		return c.fail(fmt.Errorf("bolt: commit: %w", err))
	}
	c.pendingMu.Lock()
	c.pending = newPendingRecords()
	c.pendingMu.Unlock()
	if err := c.log.markApplied(); err != nil {
		return c.fail(err)
	}
	return nil
}

// commit runs the group in one transaction. An fn that fails is taken out
// and run alone; the rest run again together.
func (c *committer) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bbolt.Tx) error {
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
		w.done <- c.db.Update(func(tx *bbolt.Tx) error { return call(w.fn, tx) })
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

// fail stops every later write with err: the log and the file may no
// longer agree, and only a restart, replaying the log, can tell.
func (c *committer) fail(err error) error {
	c.failure.Store(&err)
	return err
}

// err is the failure that stopped the writes, if any.
func (c *committer) err() error {
	if p := c.failure.Load(); p != nil {
		return *p
	}
	return nil
}
