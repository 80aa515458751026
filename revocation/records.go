package revocation

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
	"unique"

	"portcullis.dev/portcullis/store"
)

// change is a record as this replica last wrote it (nil: deleted). A cached
// copy fetched before the write may outlive it in the record cache for up
// to the staleness bound, so the change is kept that long and wins over
// the copy.
type change struct {
	record *store.Record
	at     time.Time
}

// sharedLookupTimeout bounds a store read shared by concurrent reviews (and
// so does the staleness bound, when shorter: a store that cannot answer
// within it makes the review undecided, not slow).
const sharedLookupTimeout = 10 * time.Second

// Record returns what a review reads of the record for jti: from the cache,
// else from the store (concurrent misses for one jti share a single store
// read). A change this replica wrote wins over either. The record's
// Audiences are left out (a review checks the token's own). Store errors,
// including store.ErrNotFound, are returned as they are.
func (a *Authority) Record(ctx context.Context, jti string) (*store.Record, error) {
	var ch change
	var changed bool
	if a.changes.Load() > 0 {
		a.mu.RLock()
		ch, changed = a.changed[jti]
		a.mu.RUnlock()
	}
	if changed {
		if ch.record == nil {
			return nil, fmt.Errorf("revocation: record %q was deleted: %w", jti, store.ErrNotFound)
		}
		return ch.record, nil
	}
	if r, ok := a.records.Get(jti); ok {
		return r, nil
	}
	v, err, _ := a.lookups.Do(jti, func() (any, error) {
		// The read is shared by every caller waiting on this jti, so one
		// caller giving up must not fail the others.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(sharedLookupTimeout, a.opts.Staleness))
		defer cancel()
		r, err := a.store.GetRecord(ctx, jti)
		if err != nil {
			return nil, err
		}
		r.JTI = jti // the reviewer's copy: one string for its cache and this one
		r = a.forReviews(r)
		a.records.Set(jti, r, a.opts.Staleness)
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*store.Record), nil
}

// CreateRecord writes r to the store; it is durable when this returns.
func (a *Authority) CreateRecord(ctx context.Context, r *store.Record, opts store.CreateOptions) error {
	if err := a.store.CreateRecord(ctx, r, opts); err != nil {
		return err
	}
	c := *r
	a.records.Set(r.JTI, a.forReviews(&c), a.opts.Staleness)
	return nil
}

// UpdateRecord updates the record in the store and, once that is durable,
// makes this replica use the new record at once.
func (a *Authority) UpdateRecord(ctx context.Context, jti string, update func(*store.Record) error) (*store.Record, error) {
	r, err := a.store.UpdateRecord(ctx, jti, update)
	if err != nil {
		return nil, err
	}
	a.remember(jti, r)
	return r, nil
}

// DeleteRecord deletes the record in the store and, once that is durable,
// makes this replica refuse its token at once.
func (a *Authority) DeleteRecord(ctx context.Context, jti string) error {
	if err := a.store.DeleteRecord(ctx, jti); err != nil {
		return err
	}
	a.remember(jti, nil)
	return nil
}

// GetRecordByName reads the user token record named name from the store.
func (a *Authority) GetRecordByName(ctx context.Context, name string) (*store.Record, error) {
	return a.store.GetRecordByName(ctx, name)
}

// ListRecords lists records from the store.
func (a *Authority) ListRecords(ctx context.Context, opts store.ListOptions) (*store.RecordList, error) {
	return a.store.ListRecords(ctx, opts)
}

// The user token part of a record as a review reads it: whether the token
// is disabled, and nothing else. Shared by every cached record, so never
// written.
var (
	enabledUserToken  = &store.UserToken{}
	disabledUserToken = &store.UserToken{Disabled: true}
)

// forReviews trims r, in place, to what the record cache holds: what a
// review reads. What many records share (kind, key id, group lists) is held
// once, not once per cached record, and a user token's API fields (name,
// description, labels...) are dropped.
func (a *Authority) forReviews(r *store.Record) *store.Record {
	r.Audiences = nil
	// A cluster ServiceAccount token's record holds the account's uid twice:
	// the bound object shares the record's copy (on a copy of its own, as
	// the caller of CreateRecord still holds the original).
	if sa := r.ServiceAccount; sa != nil && sa.UID == r.UID {
		shared := *sa
		shared.UID = r.UID
		r.ServiceAccount = &shared
	}
	if r.User != nil {
		if r.User.Disabled {
			r.User = disabledUserToken
		} else {
			r.User = enabledUserToken
		}
	}
	r.Kind = store.Kind(unique.Make(string(r.Kind)).Value())
	r.KeyID = unique.Make(r.KeyID).Value()
	if len(r.Groups) > 0 {
		r.Groups = a.groupLists.share(r.Groups)
	}
	return r
}

// maxSharedLists bounds the distinct group lists an authority shares between
// its cached records; records with lists beyond it keep a copy each.
const maxSharedLists = 1 << 16

// sharedLists holds distinct string lists once each (up to max of them):
// the tokens of one ServiceAccount namespace, or of one user, carry the same
// groups. The lists are never written, and have no room past their length,
// so an append to one (kube-apiserver's adds system:authenticated to a
// user's groups) makes a copy.
type sharedLists struct {
	mu    sync.RWMutex
	lists map[string][]string // the list, each item prefixed by its length -> the list
	max   int
}

func newSharedLists(maxLists int) *sharedLists {
	return &sharedLists{lists: map[string][]string{}, max: maxLists}
}

// share returns the held list equal to list, else a copy of list (with its
// strings interned), held from now on while there is room.
func (s *sharedLists) share(list []string) []string {
	var key []byte
	for _, item := range list {
		key = binary.AppendUvarint(key, uint64(len(item)))
		key = append(key, item...)
	}
	s.mu.RLock()
	held, ok := s.lists[string(key)]
	s.mu.RUnlock()
	if ok {
		return held
	}
	own := make([]string, len(list))
	for i, item := range list {
		own[i] = unique.Make(item).Value()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if held, ok := s.lists[string(key)]; ok {
		return held
	}
	if len(s.lists) < s.max {
		s.lists[string(key)] = own
	}
	return own
}

func (a *Authority) remember(jti string, r *store.Record) {
	a.mu.Lock()
	a.changed[jti] = change{record: r, at: a.clock.Now()}
	a.changes.Store(int64(len(a.changed)))
	a.mu.Unlock()
	a.records.Del(jti)
}

// forgetChangesLocked drops changes older than twice the staleness bound:
// every cached copy from before them has expired by then.
func (a *Authority) forgetChangesLocked(now time.Time) {
	for jti, ch := range a.changed {
		if now.Sub(ch.at) > 2*a.opts.Staleness {
			delete(a.changed, jti)
		}
	}
	a.changes.Store(int64(len(a.changed)))
}
