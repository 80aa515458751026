package etcd

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/store"
)

// listBatch is how many keys one range read fetches when a listing has no
// limit, and fetchBatch how many records one transaction reads (etcd's
// --max-txn-ops is 128 by default).
const (
	listBatch  = 1000
	fetchBatch = 100
)

func (s *Store) indexPrefix(index string) string { return s.prefix + "index/" + index + "/" }
func (s *Store) indexedMarker() string           { return s.prefix + "index/complete" }

// indexOps are op (put or delete) applied to r's index entries.
func (s *Store) indexOps(r *store.Record, op func(key, val string, opts ...clientv3.OpOption) clientv3.Op) []clientv3.Op {
	var ops []clientv3.Op
	for index, key := range store.IndexEntries(r) {
		ops = append(ops, op(s.indexPrefix(index)+key, ""))
	}
	return ops
}

// ListRecords implements store.Store with range reads of the index the
// options select, limited to the page, so a listing costs what it returns.
func (s *Store) ListRecords(ctx context.Context, opts store.ListOptions) (*store.RecordList, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	rng, err := opts.Range()
	if err != nil {
		return nil, err
	}
	if err := s.EnsureIndexes(ctx); err != nil {
		return nil, err
	}
	base := s.indexPrefix(rng.Index)
	if rng.Index == store.IndexAll {
		base = s.prefix + "records/"
	}
	from := base + rng.Prefix
	if rng.After != "" {
		from = base + rng.After + "\x00"
	}
	end := clientv3.GetPrefixRangeEnd(base + rng.Prefix)
	batch := int64(listBatch)
	if opts.Limit > 0 {
		batch = opts.Limit + 1
	}
	page := store.NewPage(opts, rng)
	for {
		getOpts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if rng.Index != store.IndexAll {
			getOpts = append(getOpts, clientv3.WithKeysOnly())
		}
		resp, err := s.client.Get(ctx, from, getOpts...)
		if err != nil {
			return nil, fmt.Errorf("etcd: list: %w", err)
		}
		keys := make([]string, len(resp.Kvs))
		values := make([][]byte, len(resp.Kvs))
		for i, kv := range resp.Kvs {
			keys[i], values[i] = strings.TrimPrefix(string(kv.Key), base), kv.Value
		}
		if rng.Index != store.IndexAll {
			if values, err = s.fetch(ctx, rng, keys); err != nil {
				return nil, err
			}
		}
		for i, key := range keys {
			var r *store.Record
			if values[i] != nil {
				r = new(store.Record)
				if err := store.UnmarshalRecord(values[i], r); err != nil {
					return nil, fmt.Errorf("etcd: decode record: %w", err)
				}
			}
			if !page.Add(key, r) {
				return page.List(), nil
			}
		}
		if !resp.More {
			return page.List(), nil
		}
		from = base + keys[len(keys)-1] + "\x00"
	}
}

// fetch reads the records index keys name, in transactions of fetchBatch
// reads; a record that is gone is nil.
func (s *Store) fetch(ctx context.Context, rng store.Range, keys []string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for start := 0; start < len(keys); start += fetchBatch {
		chunk := keys[start:min(start+fetchBatch, len(keys))]
		ops := make([]clientv3.Op, len(chunk))
		for i, key := range chunk {
			ops[i] = clientv3.OpGet(s.recordKey(rng.JTI(key)))
		}
		resp, err := s.client.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcd: read records: %w", err)
		}
		for i, r := range resp.Responses {
			if kvs := r.GetResponseRange().Kvs; len(kvs) > 0 {
				out[start+i] = kvs[0].Value
			}
		}
	}
	return out, nil
}

// EnsureIndexes fills the indexes from the records once, for a store
// written before they existed: it puts the entries of every record (puts
// are idempotent, so replicas doing it at once do no harm), then a marker.
// A record deleted meanwhile may leave an entry behind; listings skip
// entries whose record is gone. serve calls it before it is ready; the
// first write or listing calls it too, so that a new store is marked
// before it holds a record.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	if s.indexed.Load() {
		return nil
	}
	resp, err := s.client.Get(ctx, s.indexedMarker(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcd: read index marker: %w", err)
	}
	if resp.Count > 0 {
		s.indexed.Store(true)
		return nil
	}
	base := s.prefix + "records/"
	from, end := base, clientv3.GetPrefixRangeEnd(base)
	for {
		resp, err := s.client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(fetchBatch/2))
		if err != nil {
			return fmt.Errorf("etcd: index records: %w", err)
		}
		var ops []clientv3.Op
		for _, kv := range resp.Kvs {
			r := new(store.Record)
			if err := store.UnmarshalRecord(kv.Value, r); err != nil {
				return fmt.Errorf("etcd: decode record: %w", err)
			}
			ops = append(ops, s.indexOps(r, clientv3.OpPut)...)
		}
		if len(ops) > 0 {
			if _, err := s.client.Txn(ctx).Then(ops...).Commit(); err != nil {
				return fmt.Errorf("etcd: index records: %w", err)
			}
		}
		if !resp.More {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	if _, err := s.client.Put(ctx, s.indexedMarker(), ""); err != nil {
		return fmt.Errorf("etcd: write index marker: %w", err)
	}
	s.indexed.Store(true)
	return nil
}
