package etcd

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/store"
)

var _ store.Watcher = (*Store)(nil)

// Watch implements store.Watcher with one etcd watch on the prefix. It asks
// for progress every ProgressInterval, so a healthy watch proves itself
// fresh, and requires a leader, so a member cut off from its quorum ends
// the watch instead of going quiet. A compaction or any error ends it too:
// the caller watches again and re-reads.
func (s *Store) Watch(ctx context.Context) (<-chan store.Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	out := make(chan store.Event, 1024)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.client.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	go func() {
		defer close(out)
		defer cancel()
		ticker := time.NewTicker(store.ProgressInterval)
		defer ticker.Stop()
		send := func(e store.Event) bool {
			select {
			case out <- e:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				_ = s.client.RequestProgress(wctx)
			case resp, ok := <-wch:
				if !ok || resp.Canceled || resp.Err() != nil {
					return
				}
				switch {
				case resp.Created:
					if !send(store.Event{Type: store.EventSynced}) {
						return
					}
					continue
				case resp.IsProgressNotify():
					if !send(store.Event{Type: store.EventProgress}) {
						return
					}
					continue
				}
				for _, ev := range resp.Events {
					if e, ok := s.event(ev); ok && !send(e) {
						return
					}
				}
				// Everything up to this response's revision was delivered.
				if !send(store.Event{Type: store.EventProgress}) {
					return
				}
			}
		}
	}()
	return out, nil
}

// event translates an etcd event under the prefix.
func (s *Store) event(ev *clientv3.Event) (store.Event, bool) {
	key := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
	switch {
	case strings.HasPrefix(key, "revocations/") && ev.Type == clientv3.EventTypePut:
		rev := new(store.Revocation)
		if json.Unmarshal(ev.Kv.Value, rev) != nil {
			return store.Event{}, false
		}
		return store.Event{Type: store.EventRevocation, Revocation: rev}, true
	case strings.HasPrefix(key, "records/"):
		jti := strings.TrimPrefix(key, "records/")
		if ev.Type == clientv3.EventTypeDelete {
			return store.Event{Type: store.EventRecordDeleted, JTI: jti}, true
		}
		if !ev.IsModify() {
			return store.Event{}, false // a new record: nothing cached to invalidate
		}
		r := new(store.Record)
		if store.UnmarshalRecord(ev.Kv.Value, r) != nil {
			return store.Event{}, false
		}
		return store.Event{Type: store.EventRecordChanged, Record: r, JTI: jti}, true
	}
	return store.Event{}, false
}
