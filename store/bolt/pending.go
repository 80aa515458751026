package bolt

import (
	"fmt"
	"slices"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/store"
)

// newRecord is a record to create: its JSON, which is also its log entry,
// and the per-subject bound it is created under.
type newRecord struct {
	r       *store.Record // private to the store: never handed to a caller
	data    []byte
	maxHeld int
	keys    map[string]string // index -> the record's key in it, IndexAll included
}

func makeNewRecord(r *store.Record, data []byte, maxHeld int) *newRecord {
	keys := store.IndexEntries(r)
	keys[store.IndexAll] = r.JTI
	return &newRecord{r: r, data: data, maxHeld: maxHeld, keys: keys}
}

func decodeNewRecord(data []byte) (*newRecord, error) {
	r := new(store.Record)
	if err := store.UnmarshalRecord(data, r); err != nil {
		return nil, fmt.Errorf("bolt: decode record: %w", err)
	}
	return makeNewRecord(r, data, 0), nil
}

// check refuses the record when its jti or token name is taken, or its
// subject holds maxHeld records already; it writes nothing.
func (n *newRecord) check(tx *bbolt.Tx) error {
	r := n.r
	if tx.Bucket(bucketRecords).Get([]byte(r.JTI)) != nil {
		return fmt.Errorf("bolt: record %q: %w", r.JTI, store.ErrExists)
	}
	if n.maxHeld > 0 && heldAtLeast(tx, r, n.maxHeld) {
		return fmt.Errorf("bolt: %d records of %s %q: %w", n.maxHeld, r.Kind, r.Subject, store.ErrLimit)
	}
	if r.User != nil && tx.Bucket(bucketNames).Get([]byte(r.User.Name)) != nil {
		return fmt.Errorf("bolt: token name %q: %w", r.User.Name, store.ErrExists)
	}
	return nil
}

// put writes the record, its token name, index entries and expiry.
func (n *newRecord) put(tx *bbolt.Tx) error {
	r := n.r
	if r.User != nil {
		if err := tx.Bucket(bucketNames).Put([]byte(r.User.Name), []byte(r.JTI)); err != nil {
			return err
		}
	}
	records, expiry := tx.Bucket(bucketRecords), tx.Bucket(bucketExpiry)
	records.FillPercent, expiry.FillPercent = appendFillPercent, appendFillPercent
	tx.Bucket(indexBuckets[store.IndexKey]).FillPercent = appendFillPercent
	if err := records.Put([]byte(r.JTI), n.data); err != nil {
		return err
	}
	if err := putIndexEntries(tx, n.keys); err != nil {
		return err
	}
	return expiry.Put(expiryKey(r.ExpiresAt, r.JTI), nil)
}

// appendFillPercent is how full bbolt leaves the pages it splits in the
// buckets whose keys grow with minting time: records (by jti), expiry (by
// time) and the key index (key id, then jti). New keys land after the last,
// so a page split there is not written again: filled to 90%, as etcd fills
// its bucket of revisions, these buckets take about half the pages of
// bbolt's default (50%), which the file, the page cache and every commit
// carry. The subject index takes its keys in any order and keeps the default.
const appendFillPercent = 0.9

// pendingRecords are the records acknowledged (logged) and not yet in a
// commit of the file, for readers to see beside it.
type pendingRecords struct {
	order  []*newRecord
	byJTI  map[string]*newRecord
	byName map[string]*newRecord
}

func newPendingRecords() *pendingRecords {
	return &pendingRecords{byJTI: map[string]*newRecord{}, byName: map[string]*newRecord{}}
}

func (p *pendingRecords) add(n *newRecord) {
	p.order = append(p.order, n)
	p.byJTI[n.r.JTI] = n
	if n.r.User != nil {
		p.byName[n.r.User.Name] = n
	}
}

func (p *pendingRecords) len() int { return len(p.order) }

// decode is a caller's own copy of the pending record n.
func (n *newRecord) decode() (*store.Record, error) {
	r := new(store.Record)
	if err := store.UnmarshalRecord(n.data, r); err != nil {
		return nil, fmt.Errorf("bolt: decode record: %w", err)
	}
	return r, nil
}

// inRange is the pending records in rng, with their keys in its index, in
// key order.
func (p *pendingRecords) inRange(rng store.Range) []pendingKey {
	var keys []pendingKey
	for _, n := range p.order {
		if key := n.keys[rng.Index]; strings.HasPrefix(key, rng.Prefix) && key > rng.After {
			keys = append(keys, pendingKey{key: key, record: n})
		}
	}
	slices.SortFunc(keys, func(a, b pendingKey) int { return strings.Compare(a.key, b.key) })
	return keys
}

type pendingKey struct {
	key    string
	record *newRecord
}
