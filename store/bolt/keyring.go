package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"portcullis.dev/portcullis/store"
)

// The key ring bucket holds the ring and its revision, a counter.
var (
	keyRingValue    = []byte("ring")
	keyRingRevision = []byte("revision")
)

// GetKeyRing implements store.KeyRings.
func (s *Store) GetKeyRing(_ context.Context) (*store.KeyRing, error) {
	var ring *store.KeyRing
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		ring, err = getKeyRing(tx)
		return err
	})
	return ring, wrap(err)
}

func getKeyRing(tx *bbolt.Tx) (*store.KeyRing, error) {
	b := tx.Bucket(bucketKeyRing)
	ring := &store.KeyRing{}
	data := b.Get(keyRingValue)
	if data == nil {
		return ring, nil
	}
	if err := json.Unmarshal(data, ring); err != nil {
		return nil, fmt.Errorf("bolt: decode key ring: %w", err)
	}
	ring.Revision = int64(binary.BigEndian.Uint64(b.Get(keyRingRevision)))
	return ring, nil
}

// SwapKeyRing implements store.KeyRings.
func (s *Store) SwapKeyRing(_ context.Context, ring *store.KeyRing) (int64, error) {
	data, err := json.Marshal(ring)
	if err != nil {
		return 0, fmt.Errorf("bolt: encode key ring: %w", err)
	}
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	var stored store.KeyRing
	err = s.writes.do(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketKeyRing)
		var rev uint64
		if v := b.Get(keyRingRevision); v != nil {
			rev = binary.BigEndian.Uint64(v)
		}
		if int64(rev) != ring.Revision {
			return fmt.Errorf("bolt: key ring at revision %d, not %d: %w", rev, ring.Revision, store.ErrConflict)
		}
		if err := b.Put(keyRingValue, data); err != nil {
			return err
		}
		if err := json.Unmarshal(data, &stored); err != nil {
			return err
		}
		stored.Revision = int64(rev + 1)
		return b.Put(keyRingRevision, binary.BigEndian.AppendUint64(nil, rev+1))
	})
	if err != nil {
		return 0, wrap(err)
	}
	s.ringWatch.publish(&stored)
	return stored.Revision, nil
}

// WatchKeyRing implements store.KeyRings. This process is the only writer,
// so every swap is seen, in order.
func (s *Store) WatchKeyRing(ctx context.Context) (<-chan *store.KeyRing, error) {
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	ring, err := s.GetKeyRing(ctx)
	if err != nil {
		return nil, err
	}
	ch := s.ringWatch.subscribe(16, ring)
	go func() {
		<-ctx.Done()
		s.ringWatch.unsubscribe(ch)
	}()
	return ch, nil
}
