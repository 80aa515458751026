// Package bolt is the embedded store backend for a single Portcullis
// replica: one bbolt file behind a write-ahead log. Nothing is acknowledged
// before it is synced to one of the two.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"portcullis.dev/portcullis/store"
)

var (
	bucketRecords     = []byte("records")
	bucketExpiry      = []byte("expiry")
	bucketRevocations = []byte("revocations")
	bucketNames       = []byte("names") // user token name -> jti
	bucketKeyRing     = []byte("keyring")
	// The record indexes (store.IndexEntries): keys only, values empty.
	indexBuckets = map[string][]byte{store.IndexSubject: []byte("index-subject"), store.IndexKey: []byte("index-kid")}
)

// Store is a store.Store on a bbolt file.
type Store struct {
	db     *bbolt.DB
	log    *recordLog
	writes *committer
	watch  watchers[store.Event]
	// ringMu orders key ring swaps with their publication, so watchers
	// see rings in revision order.
	ringMu    sync.Mutex
	ringWatch watchers[*store.KeyRing]
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Watcher = (*Store)(nil)
)

// Open opens or creates the bbolt file at path and its write-ahead log, the
// directory path+".wal", and replays the log's entries the file does not
// hold yet. It fails after lockTimeout if another process holds the file.
func Open(path string, lockTimeout time.Duration) (*Store, error) {
	return open(path, lockTimeout, flushInterval)
}

// open is Open with the longest a new record waits for its commit to the
// file (tests lengthen it to keep records in the log alone).
func open(path string, lockTimeout, flushEvery time.Duration) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: %w", err)
	}
	// The array freelist: every commit writes the freelist, and the array
	// type writes it as the sorted list it keeps, where the map type sorts
	// every free page id again (at 1M records, about 1,000 ids and half of a
	// key ring swap's CPU). The map type's gain, finding runs of free pages
	// for values over a page, is rare here: records are far smaller.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, FreelistType: bbolt.FreelistArrayType})
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	var applied uint64
	logDir := path + ".wal"
	// A file that has every bucket is only read: a commit at every open
	// would cost two fdatasyncs and a freelist write before ready.
	initialised := false
	err = db.View(func(tx *bbolt.Tx) error {
		initialised, applied = hasBuckets(tx), logApplied(tx)
		return nil
	})
	if err == nil && !initialised {
		err = db.Update(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketMeta) == nil && tx.Bucket(bucketRecords) == nil && logExists(logDir) {
				// A new file beside an old log: replaying it would bring
				// back the records of the file that was removed.
				return fmt.Errorf("%w: the log %s belongs to a store file that is gone; remove it to start empty", errForeignLog, logDir)
			}
			for _, b := range storeBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			applied = logApplied(tx)
			return createIndexes(tx)
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: init %s: %w", path, err)
	}
	log, err := replayLog(db, logDir, applied)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, log: log, writes: newCommitter(db, log, flushEvery)}, nil
}

var errForeignLog = errors.New("bolt: foreign log")

// logApplied is the index of the last log entry the file holds (0 for
// none).
func logApplied(tx *bbolt.Tx) uint64 {
	if m := tx.Bucket(bucketMeta); m != nil {
		if v := m.Get(metaLogApplied); len(v) == 8 {
			return binary.BigEndian.Uint64(v)
		}
	}
	return 0
}

// storeBuckets are the buckets every store file has.
var storeBuckets = [][]byte{bucketRecords, bucketExpiry, bucketRevocations, bucketNames, bucketKeyRing, bucketMeta}

// hasBuckets reports whether tx's file has every bucket, the indexes'
// included: nothing to create or fill.
func hasBuckets(tx *bbolt.Tx) bool {
	for _, b := range storeBuckets {
		if tx.Bucket(b) == nil {
			return false
		}
	}
	for _, b := range indexBuckets {
		if tx.Bucket(b) == nil {
			return false
		}
	}
	return true
}

// replayLog opens the log in dir and writes the entries after applied into
// the file: records acknowledged before a crash that no commit held.
func replayLog(db *bbolt.DB, dir string, applied uint64) (*recordLog, error) {
	log, ents, err := openRecordLog(dir, applied)
	if err != nil {
		return nil, err
	}
	if len(ents) == 0 {
		if err := log.markApplied(); err != nil {
			log.close()
			return nil, err
		}
		return log, nil
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, e := range ents {
			n, err := decodeNewRecord(e.data)
			if err != nil {
				return fmt.Errorf("log entry %d: %w", e.index, err)
			}
			if err := n.put(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaLogApplied, binary.BigEndian.AppendUint64(nil, log.last))
	})
	if err == nil {
		err = log.markApplied()
	}
	if err != nil {
		log.close()
		return nil, fmt.Errorf("bolt: replay %s: %w", dir, err)
	}
	return log, nil
}

// expiryKey orders records by expiry so PurgeExpired scans only what is due.
func expiryKey(t time.Time, jti string) []byte {
	k := make([]byte, 8, 8+len(jti))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, jti...)
}

func wrap(err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

// CreateRecord implements store.Store. Concurrent creates share one log
// append and one fdatasync; each returns once its record is durable.
func (s *Store) CreateRecord(_ context.Context, r *store.Record, opts store.CreateOptions) error {
	data, err := store.MarshalRecord(r)
	if err != nil {
		return fmt.Errorf("bolt: encode record: %w", err)
	}
	own := *r // the store's keys are read from its own copy
	if r.User != nil {
		u := *r.User
		own.User = &u
	}
	return wrap(s.writes.create(makeNewRecord(&own, data, opts.MaxHeld)))
}

// view runs fn in a read transaction beside the records acknowledged and
// not yet committed to the file (a record may be in both).
func (s *Store) view(fn func(*bbolt.Tx, *pendingRecords) error) error {
	s.writes.pendingMu.RLock()
	defer s.writes.pendingMu.RUnlock()
	return s.db.View(func(tx *bbolt.Tx) error { return fn(tx, s.writes.pending) })
}

// GetRecordByName implements store.Store.
func (s *Store) GetRecordByName(_ context.Context, name string) (*store.Record, error) {
	var r *store.Record
	err := s.view(func(tx *bbolt.Tx, pending *pendingRecords) error {
		if n := pending.byName[name]; n != nil {
			var err error
			r, err = n.decode()
			return err
		}
		jti := tx.Bucket(bucketNames).Get([]byte(name))
		if jti == nil {
			return fmt.Errorf("bolt: token %q: %w", name, store.ErrNotFound)
		}
		var err error
		r, err = getRecord(tx, jti)
		return err
	})
	return r, wrap(err)
}

func getRecord(tx *bbolt.Tx, jti []byte) (*store.Record, error) {
	data := tx.Bucket(bucketRecords).Get(jti)
	if data == nil {
		return nil, fmt.Errorf("bolt: record %q: %w", jti, store.ErrNotFound)
	}
	r := new(store.Record)
	if err := store.UnmarshalRecord(data, r); err != nil {
		return nil, fmt.Errorf("bolt: decode record %q: %w", jti, err)
	}
	return r, nil
}

// UpdateRecord implements store.Store.
func (s *Store) UpdateRecord(_ context.Context, jti string, update func(*store.Record) error) (*store.Record, error) {
	var out *store.Record
	err := s.writes.do(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, []byte(jti))
		if err != nil {
			return err
		}
		oldExpiry := r.ExpiresAt
		if err := store.ApplyUpdate(r, update); err != nil {
			return err
		}
		data, err := store.MarshalRecord(r)
		if err != nil {
			return fmt.Errorf("bolt: encode record: %w", err)
		}
		if err := tx.Bucket(bucketRecords).Put([]byte(jti), data); err != nil {
			return err
		}
		if !r.ExpiresAt.Equal(oldExpiry) {
			expiry := tx.Bucket(bucketExpiry)
			if err := expiry.Delete(expiryKey(oldExpiry, jti)); err != nil {
				return err
			}
			if err := expiry.Put(expiryKey(r.ExpiresAt, jti), nil); err != nil {
				return err
			}
		}
		out = r
		return nil
	})
	if err == nil {
		s.watch.publish(store.Event{Type: store.EventRecordChanged, Record: out, JTI: jti})
	}
	return out, wrap(err)
}

// DeleteRecord implements store.Store.
func (s *Store) DeleteRecord(_ context.Context, jti string) error {
	err := s.writes.do(func(tx *bbolt.Tx) error {
		r, err := getRecord(tx, []byte(jti))
		if err != nil {
			return err
		}
		return deleteRecord(tx, r)
	})
	if err == nil {
		s.watch.publish(store.Event{Type: store.EventRecordDeleted, JTI: jti})
	}
	return wrap(err)
}

func deleteRecord(tx *bbolt.Tx, r *store.Record) error {
	if err := tx.Bucket(bucketRecords).Delete([]byte(r.JTI)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketExpiry).Delete(expiryKey(r.ExpiresAt, r.JTI)); err != nil {
		return err
	}
	for index, key := range store.IndexEntries(r) {
		if err := tx.Bucket(indexBuckets[index]).Delete([]byte(key)); err != nil {
			return err
		}
	}
	if name := store.UserName(r); name != "" {
		return tx.Bucket(bucketNames).Delete([]byte(name))
	}
	return nil
}

// GetRecord implements store.Store.
func (s *Store) GetRecord(_ context.Context, jti string) (*store.Record, error) {
	var r *store.Record
	err := s.view(func(tx *bbolt.Tx, pending *pendingRecords) error {
		if n := pending.byJTI[jti]; n != nil {
			var err error
			r, err = n.decode()
			return err
		}
		data := tx.Bucket(bucketRecords).Get([]byte(jti))
		if data == nil {
			return fmt.Errorf("bolt: record %q: %w", jti, store.ErrNotFound)
		}
		r = new(store.Record)
		return store.UnmarshalRecord(data, r)
	})
	return r, wrap(err)
}

// ListRecords implements store.Store: a cursor over the index range the
// options select, so a listing costs what it returns.
func (s *Store) ListRecords(_ context.Context, opts store.ListOptions) (*store.RecordList, error) {
	rng, err := opts.Range()
	if err != nil {
		return nil, err
	}
	page := store.NewPage(opts, rng)
	err = s.view(func(tx *bbolt.Tx, pending *pendingRecords) error {
		records := tx.Bucket(bucketRecords)
		index := records
		if rng.Index != store.IndexAll {
			index = tx.Bucket(indexBuckets[rng.Index])
		}
		// The file's keys and the pending ones, merged in key order.
		more := pending.inRange(rng)
		addPending := func(upTo []byte) (bool, error) {
			for len(more) > 0 && (upTo == nil || more[0].key <= string(upTo)) {
				p := more[0]
				more = more[1:]
				if upTo != nil && p.key == string(upTo) {
					continue // committed since: the file's copy follows
				}
				r, err := p.record.decode()
				if err != nil {
					return false, err
				}
				if !page.Add(p.key, r) {
					return false, nil
				}
			}
			return true, nil
		}
		c := index.Cursor()
		k, v := c.Seek([]byte(rng.Prefix))
		if rng.After != "" {
			if k, v = c.Seek([]byte(rng.After)); string(k) == rng.After {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, []byte(rng.Prefix)); k, v = c.Next() {
			if on, err := addPending(k); !on || err != nil {
				return err
			}
			if rng.Index != store.IndexAll {
				v = records.Get([]byte(rng.JTI(string(k))))
			}
			var r *store.Record
			if v != nil {
				r = new(store.Record)
				if err := store.UnmarshalRecord(v, r); err != nil {
					return fmt.Errorf("bolt: decode record: %w", err)
				}
			}
			if !page.Add(string(k), r) {
				return nil
			}
		}
		_, err := addPending(nil)
		return err
	})
	if err != nil {
		return nil, wrap(err)
	}
	return page.List(), nil
}

// Revoke implements store.Store.
func (s *Store) Revoke(_ context.Context, rev *store.Revocation) error {
	err := s.revoke(rev)
	if err == nil {
		c := *rev
		s.watch.publish(store.Event{Type: store.EventRevocation, Revocation: &c})
	}
	return err
}

func (s *Store) revoke(rev *store.Revocation) error {
	return wrap(s.writes.do(func(tx *bbolt.Tx) error {
		revs := tx.Bucket(bucketRevocations)
		if revs.Get([]byte(rev.Name)) != nil {
			return fmt.Errorf("bolt: revocation %q: %w", rev.Name, store.ErrExists)
		}
		if rev.Scope == store.ScopeJTI {
			records := tx.Bucket(bucketRecords)
			data := records.Get([]byte(rev.Target))
			if data == nil {
				return fmt.Errorf("bolt: record %q: %w", rev.Target, store.ErrNotFound)
			}
			var r store.Record
			if err := store.UnmarshalRecord(data, &r); err != nil {
				return fmt.Errorf("bolt: decode record: %w", err)
			}
			if store.MarkRevoked(&r, rev) {
				updated, err := store.MarshalRecord(&r)
				if err != nil {
					return err
				}
				if err := records.Put([]byte(r.JTI), updated); err != nil {
					return err
				}
			}
		}
		data, err := json.Marshal(rev)
		if err != nil {
			return fmt.Errorf("bolt: encode revocation: %w", err)
		}
		return revs.Put([]byte(rev.Name), data)
	}))
}

// GetRevocation implements store.Store.
func (s *Store) GetRevocation(_ context.Context, name string) (*store.Revocation, error) {
	var rev *store.Revocation
	err := s.db.View(func(tx *bbolt.Tx) error {
		data := tx.Bucket(bucketRevocations).Get([]byte(name))
		if data == nil {
			return fmt.Errorf("bolt: revocation %q: %w", name, store.ErrNotFound)
		}
		rev = new(store.Revocation)
		return json.Unmarshal(data, rev)
	})
	return rev, wrap(err)
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(_ context.Context) ([]*store.Revocation, error) {
	var out []*store.Revocation
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRevocations).ForEach(func(_, v []byte) error {
			rev := new(store.Revocation)
			if err := json.Unmarshal(v, rev); err != nil {
				return fmt.Errorf("bolt: decode revocation: %w", err)
			}
			out = append(out, rev)
			return nil
		})
	})
	return out, wrap(err)
}

// PurgeExpired implements store.Store.
func (s *Store) PurgeExpired(_ context.Context, now time.Time) (int, error) {
	var n int
	err := s.writes.do(func(tx *bbolt.Tx) error {
		n = 0 // the function may run again
		expiry, revs := tx.Bucket(bucketExpiry), tx.Bucket(bucketRevocations)
		limit := expiryKey(now, "")
		var due [][]byte
		c := expiry.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], limit[:8]) < 0; k, _ = c.Next() {
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			r, err := getRecord(tx, k[8:])
			if errors.Is(err, store.ErrNotFound) {
				// An index entry without its record: drop it.
				if err := expiry.Delete(k); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			if err := deleteRecord(tx, r); err != nil {
				return err
			}
			n++
		}
		var gone [][]byte
		var live []*store.Revocation
		err := revs.ForEach(func(k, v []byte) error {
			var rev store.Revocation
			if err := json.Unmarshal(v, &rev); err != nil {
				return fmt.Errorf("bolt: decode revocation: %w", err)
			}
			if rev.ExpiresAt != nil && rev.ExpiresAt.Before(now) {
				gone = append(gone, bytes.Clone(k))
			} else {
				live = append(live, &rev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rev := range store.SupersededMarks(live) {
			gone = append(gone, []byte(rev.Name))
		}
		for _, k := range gone {
			if err := revs.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, wrap(err)
}

// Ready implements store.Store. A store whose log or file failed takes no
// more writes until a restart replays the log: not ready.
func (s *Store) Ready(_ context.Context) error {
	if err := s.writes.err(); err != nil {
		return fmt.Errorf("bolt: writes stopped until a restart: %w", err)
	}
	return wrap(s.db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketRecords) == nil {
			return errors.New("bolt: records bucket missing")
		}
		return nil
	}))
}

// Close implements store.Store: the writes already asked for are committed
// first.
func (s *Store) Close() error {
	s.writes.close(true)
	return errors.Join(s.log.close(), s.db.Close())
}
