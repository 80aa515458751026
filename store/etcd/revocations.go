package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/store"
)

// Revoke implements store.Store.
func (s *Store) Revoke(ctx context.Context, rev *store.Revocation) error {
	if err := s.open(); err != nil {
		return err
	}
	for {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.revKey(rev.Name)), "=", 0)}
		var ops []clientv3.Op
		if rev.Scope == store.ScopeJTI {
			r, modRev, err := s.getRecord(ctx, rev.Target)
			if err != nil {
				return err
			}
			if store.MarkRevoked(r, rev) {
				data, err := store.MarshalRecord(r)
				if err != nil {
					return err
				}
				ops = append(ops, clientv3.OpPut(s.recordKey(r.JTI), string(data)))
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.recordKey(r.JTI)), "=", modRev))
		}
		data, err := json.Marshal(rev)
		if err != nil {
			return fmt.Errorf("etcd: encode revocation: %w", err)
		}
		ops = append(ops, clientv3.OpPut(s.revKey(rev.Name), string(data)))
		resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(s.revKey(rev.Name))).Commit()
		if err != nil {
			return fmt.Errorf("etcd: revoke: %w", err)
		}
		if resp.Succeeded {
			return nil
		}
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
			return fmt.Errorf("etcd: revocation %q: %w", rev.Name, store.ErrExists)
		}
		// The record changed in between: read it again.
	}
}

// GetRevocation implements store.Store.
func (s *Store) GetRevocation(ctx context.Context, name string) (*store.Revocation, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	rev := new(store.Revocation)
	if _, err := s.get(ctx, s.revKey(name), func(data []byte) error { return json.Unmarshal(data, rev) }); err != nil {
		return nil, fmt.Errorf("etcd: revocation %q: %w", name, err)
	}
	return rev, nil
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(ctx context.Context) ([]*store.Revocation, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	resp, err := s.client.Get(ctx, s.prefix+"revocations/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcd: list revocations: %w", err)
	}
	var out []*store.Revocation
	for _, kv := range resp.Kvs {
		rev := new(store.Revocation)
		if err := json.Unmarshal(kv.Value, rev); err != nil {
			return nil, fmt.Errorf("etcd: decode revocation: %w", err)
		}
		out = append(out, rev)
	}
	return out, nil
}

// PurgeExpired implements store.Store. It is a sweep over the expiry index
// rather than etcd leases: a record's expiry can move (a user token's ttl),
// which a lease cannot follow without a new lease per change, and the sweep
// deletes the record, its name and its revocations in one transaction.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) (int, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	resp, err := s.client.Get(ctx, s.expiryPrefix(), clientv3.WithRange(s.expiryKey(now, "")))
	if err != nil {
		return 0, fmt.Errorf("etcd: purge: %w", err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		jti := key[len(s.expiryPrefix())+17:]
		r, err := s.GetRecord(ctx, jti)
		if errors.Is(err, store.ErrNotFound) {
			if _, err := s.client.Delete(ctx, key); err != nil {
				return n, fmt.Errorf("etcd: purge: %w", err)
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if !r.ExpiresAt.Before(now) {
			continue // moved by an update since the index was read
		}
		if err := s.DeleteRecord(ctx, jti); err != nil && !errors.Is(err, store.ErrNotFound) {
			return n, err
		}
		n++
	}
	revs, err := s.ListRevocations(ctx)
	if err != nil {
		return n, err
	}
	var live, gone []*store.Revocation
	for _, rev := range revs {
		if rev.ExpiresAt != nil && rev.ExpiresAt.Before(now) {
			gone = append(gone, rev)
		} else {
			live = append(live, rev)
		}
	}
	for _, rev := range append(gone, store.SupersededMarks(live)...) {
		if _, err := s.client.Delete(ctx, s.revKey(rev.Name)); err != nil {
			return n, fmt.Errorf("etcd: purge revocation: %w", err)
		}
	}
	return n, nil
}
