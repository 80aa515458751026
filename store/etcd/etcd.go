// Package etcd is the store backend for several replicas: the revocation and
// TTL store on an etcd v3 cluster. Every write is one transaction, committed
// by a quorum of the cluster before it returns.
package etcd

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/store"
)

// Store is a store.Store on etcd. Keys under Prefix:
//
//	records/<jti>           the record (JSON)
//	names/<name>            the jti of the user token named name
//	expiry/<hex ns>/<jti>   an index of records by expiry, for PurgeExpired
//	revocations/<name>      the revocation (JSON)
//	index/<index>/<key>     the record indexes (store.IndexEntries), empty values
//	keyring                 the signing key ring (JSON)
type Store struct {
	client *clientv3.Client
	prefix string
	// ownClient is closed by Close.
	ownClient bool
	closed    atomic.Bool
	// indexed is set once the indexes are known to cover every record.
	indexed atomic.Bool
}

// open fails once Close was called, as the Store contract asks.
func (s *Store) open() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

var _ store.Store = (*Store)(nil)

// Config configures the backend.
type Config struct {
	// Client is an etcd client; the store does not close it.
	Client *clientv3.Client
	// Prefix is put before every key, so several installations can share a
	// cluster (default "/portcullis/").
	Prefix string
}

// New returns a store on cfg.Client.
func New(cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "/portcullis/"
	}
	return &Store{client: cfg.Client, prefix: cfg.Prefix}
}

// Dial connects to endpoints and returns a store that closes the client on Close.
func Dial(cfg clientv3.Config, prefix string) (*Store, error) {
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	s := New(Config{Client: c, Prefix: prefix})
	s.ownClient = true
	return s, nil
}

func (s *Store) recordKey(jti string) string { return s.prefix + "records/" + jti }
func (s *Store) nameKey(name string) string  { return s.prefix + "names/" + name }
func (s *Store) revKey(name string) string   { return s.prefix + "revocations/" + name }
func (s *Store) expiryPrefix() string        { return s.prefix + "expiry/" }

// expiryKey orders records by expiry: the time as 16 hex digits sorts as
// the time does.
func (s *Store) expiryKey(t time.Time, jti string) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
	return s.expiryPrefix() + hex.EncodeToString(b[:]) + "/" + jti
}

// putRecordOps are the writes that store r (its record and indexes).
func (s *Store) putRecordOps(r *store.Record) ([]clientv3.Op, error) {
	data, err := store.MarshalRecord(r)
	if err != nil {
		return nil, fmt.Errorf("etcd: encode record: %w", err)
	}
	ops := []clientv3.Op{
		clientv3.OpPut(s.recordKey(r.JTI), string(data)),
		clientv3.OpPut(s.expiryKey(r.ExpiresAt, r.JTI), ""),
	}
	if r.User != nil {
		ops = append(ops, clientv3.OpPut(s.nameKey(r.User.Name), r.JTI))
	}
	return ops, nil
}

// CreateRecord implements store.Store. With opts.MaxHeld it counts the
// subject's index range and commits only if no key of that range changed
// since the count (a transaction comparing the range's mod revisions),
// counting again when one did.
func (s *Store) CreateRecord(ctx context.Context, r *store.Record, opts store.CreateOptions) error {
	if err := s.open(); err != nil {
		return err
	}
	if err := s.EnsureIndexes(ctx); err != nil {
		return err
	}
	ops, err := s.putRecordOps(r)
	if err != nil {
		return err
	}
	ops = append(ops, s.indexOps(r, clientv3.OpPut)...)
	keys := []string{s.recordKey(r.JTI)}
	if r.User != nil {
		keys = append(keys, s.nameKey(r.User.Name))
	}
	var absent []clientv3.Cmp
	taken := make([]clientv3.Op, 0, len(keys)+1)
	for _, k := range keys {
		absent = append(absent, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		taken = append(taken, clientv3.OpGet(k, clientv3.WithCountOnly()))
	}
	held := s.indexPrefix(store.IndexSubject) + store.SubjectPrefix(r.Kind, r.Subject)
	var count, rev int64
	if opts.MaxHeld > 0 {
		resp, err := s.client.Get(ctx, held, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("etcd: count records: %w", err)
		}
		count, rev = resp.Count, resp.Header.Revision
		taken = append(taken, clientv3.OpGet(held, clientv3.WithPrefix(), clientv3.WithCountOnly()))
	}
	for {
		cmps := absent
		if opts.MaxHeld > 0 {
			if count >= int64(opts.MaxHeld) {
				return fmt.Errorf("etcd: %d records of %s %q: %w", opts.MaxHeld, r.Kind, r.Subject, store.ErrLimit)
			}
			cmps = append(slices.Clip(absent), clientv3.Compare(clientv3.ModRevision(held), "<", rev+1).WithPrefix())
		}
		resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Else(taken...).Commit()
		if err != nil {
			return fmt.Errorf("etcd: create record: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		for i := range keys {
			if resp.Responses[i].GetResponseRange().Count > 0 {
				return fmt.Errorf("etcd: record %q: %w", r.JTI, store.ErrExists)
			}
		}
		if opts.MaxHeld <= 0 {
			return fmt.Errorf("etcd: create record %q: the transaction failed with no key taken", r.JTI)
		}
		// A record of the subject was written since the count: count again.
		count, rev = resp.Responses[len(keys)].GetResponseRange().Count, resp.Header.Revision
	}
}

// get reads one value and decodes it; ErrNotFound when absent. It returns
// the key's mod revision for compare-and-swap.
func (s *Store) get(ctx context.Context, key string, decode func([]byte) error) (int64, error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("etcd: get: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, store.ErrNotFound
	}
	if err := decode(resp.Kvs[0].Value); err != nil {
		return 0, fmt.Errorf("etcd: decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// getRecord reads the record jti with the store's record codec and returns
// it with its mod revision.
func (s *Store) getRecord(ctx context.Context, jti string) (*store.Record, int64, error) {
	r := new(store.Record)
	rev, err := s.get(ctx, s.recordKey(jti), func(data []byte) error { return store.UnmarshalRecord(data, r) })
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: record %q: %w", jti, err)
	}
	return r, rev, nil
}

// GetRecord implements store.Store.
func (s *Store) GetRecord(ctx context.Context, jti string) (*store.Record, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	r, _, err := s.getRecord(ctx, jti)
	return r, err
}

// GetRecordByName implements store.Store.
func (s *Store) GetRecordByName(ctx context.Context, name string) (*store.Record, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	resp, err := s.client.Get(ctx, s.nameKey(name))
	if err != nil {
		return nil, fmt.Errorf("etcd: get: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcd: token %q: %w", name, store.ErrNotFound)
	}
	return s.GetRecord(ctx, string(resp.Kvs[0].Value))
}

// UpdateRecord implements store.Store: optimistic, retried while another
// writer changes the record in between.
func (s *Store) UpdateRecord(ctx context.Context, jti string, update func(*store.Record) error) (*store.Record, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	for {
		r, rev, err := s.getRecord(ctx, jti)
		if err != nil {
			return nil, err
		}
		oldExpiry := r.ExpiresAt
		if err := store.ApplyUpdate(r, update); err != nil {
			return nil, err
		}
		ops, err := s.putRecordOps(r)
		if err != nil {
			return nil, err
		}
		if !r.ExpiresAt.Equal(oldExpiry) {
			ops = append(ops, clientv3.OpDelete(s.expiryKey(oldExpiry, jti)))
		}
		resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.recordKey(jti)), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("etcd: update record: %w", err)
		}
		if resp.Succeeded {
			return r, nil
		}
	}
}

// deleteRecordOps are the writes that remove r and its indexes.
func (s *Store) deleteRecordOps(r *store.Record) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpDelete(s.recordKey(r.JTI)), clientv3.OpDelete(s.expiryKey(r.ExpiresAt, r.JTI))}
	ops = append(ops, s.indexOps(r, func(key, _ string, _ ...clientv3.OpOption) clientv3.Op { return clientv3.OpDelete(key) })...)
	if name := store.UserName(r); name != "" {
		ops = append(ops, clientv3.OpDelete(s.nameKey(name)))
	}
	return ops
}

// DeleteRecord implements store.Store.
func (s *Store) DeleteRecord(ctx context.Context, jti string) error {
	if err := s.open(); err != nil {
		return err
	}
	for {
		r, rev, err := s.getRecord(ctx, jti)
		if err != nil {
			return err
		}
		resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.recordKey(jti)), "=", rev)).Then(s.deleteRecordOps(r)...).Commit()
		if err != nil {
			return fmt.Errorf("etcd: delete record: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
	}
}

// Ready implements store.Store: a linearizable read, which needs a quorum.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.open(); err != nil {
		return err
	}
	if _, err := s.client.Get(ctx, s.prefix+"ready"); err != nil {
		return fmt.Errorf("etcd: not ready: %w", err)
	}
	return nil
}

// Close implements store.Store. Afterwards every call fails with ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ownClient {
		return s.client.Close()
	}
	return nil
}
