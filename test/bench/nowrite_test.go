package bench

import (
	"context"

	"portcullis.dev/portcullis/store"
)

// noWriteStore acknowledges new records without writing them anywhere; every
// other call goes to the real store. It exists only to measure what the
// durable write of a mint costs: the same requests, the same path and the
// same signing, with the disk taken out. Tokens minted on it do not review.
type noWriteStore struct {
	store.Store
	store.Watcher
}

func noWrite(s store.Store) store.Store {
	w, _ := s.(store.Watcher)
	return noWriteStore{Store: s, Watcher: w}
}

// CreateRecord acknowledges r at once.
func (noWriteStore) CreateRecord(context.Context, *store.Record, store.CreateOptions) error {
	return nil
}
