package bolt

import (
	"bytes"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/store"
)

// createIndexes creates the index buckets; a file written before they
// existed gets them filled from its records, once, in the opening
// transaction.
func createIndexes(tx *bbolt.Tx) error {
	fill := false
	for _, name := range indexBuckets {
		if tx.Bucket(name) == nil {
			fill = true
		}
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if !fill {
		return nil
	}
	return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
		r := new(store.Record)
		if err := store.UnmarshalRecord(v, r); err != nil {
			return fmt.Errorf("bolt: decode record: %w", err)
		}
		return putIndexEntries(tx, store.IndexEntries(r))
	})
}

// putIndexEntries writes a record's index keys (store.IndexEntries), each
// in its index's bucket; IndexAll is the records bucket itself and is
// passed over.
func putIndexEntries(tx *bbolt.Tx, keys map[string]string) error {
	for index, key := range keys {
		if b := indexBuckets[index]; b != nil {
			if err := tx.Bucket(b).Put([]byte(key), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// heldAtLeast reports whether tx holds n or more records of r's kind and
// subject: it reads their index range, at most n keys of it.
func heldAtLeast(tx *bbolt.Tx, r *store.Record, n int) bool {
	prefix := []byte(store.SubjectPrefix(r.Kind, r.Subject))
	c := tx.Bucket(indexBuckets[store.IndexSubject]).Cursor()
	held := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if held++; held >= n {
			return true
		}
	}
	return false
}
