package etcd

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/store"
)

func (s *Store) keyRingKey() string { return s.prefix + "keyring" }

// GetKeyRing implements store.KeyRings. The ring's revision is its key's
// etcd ModRevision.
func (s *Store) GetKeyRing(ctx context.Context) (*store.KeyRing, error) {
	ring, _, err := s.getKeyRing(ctx)
	return ring, err
}

// getKeyRing also returns the cluster revision the ring was read at.
func (s *Store) getKeyRing(ctx context.Context) (*store.KeyRing, int64, error) {
	if err := s.open(); err != nil {
		return nil, 0, err
	}
	resp, err := s.client.Get(ctx, s.keyRingKey())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: get key ring: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return &store.KeyRing{}, resp.Header.Revision, nil
	}
	ring, err := decodeKeyRing(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return ring, resp.Header.Revision, err
}

func decodeKeyRing(data []byte, rev int64) (*store.KeyRing, error) {
	ring := &store.KeyRing{}
	if err := json.Unmarshal(data, ring); err != nil {
		return nil, fmt.Errorf("etcd: decode key ring: %w", err)
	}
	ring.Revision = rev
	return ring, nil
}

// SwapKeyRing implements store.KeyRings as one transaction comparing the
// key's ModRevision (0 when it does not exist).
func (s *Store) SwapKeyRing(ctx context.Context, ring *store.KeyRing) (int64, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	data, err := json.Marshal(ring)
	if err != nil {
		return 0, fmt.Errorf("etcd: encode key ring: %w", err)
	}
	key := s.keyRingKey()
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", ring.Revision)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd: swap key ring: %w", err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd: key ring is no longer at revision %d: %w", ring.Revision, store.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// WatchKeyRing implements store.KeyRings: the ring as read, then an etcd
// watch from the revision after that read, so no swap falls in between.
// It requires a leader, so a member cut off from its quorum ends the watch.
func (s *Store) WatchKeyRing(ctx context.Context) (<-chan *store.KeyRing, error) {
	ring, readAt, err := s.getKeyRing(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan *store.KeyRing, 1)
	out <- ring
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.client.Watch(wctx, s.keyRingKey(), clientv3.WithRev(readAt+1))
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if resp.Canceled || resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				ring, err := decodeKeyRing(ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					return
				}
				select {
				case out <- ring:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
