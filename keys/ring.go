package keys

import (
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// Ring is the set of keys Portcullis signs and verifies with. Reads are
// lock-free (an immutable snapshot behind an atomic pointer) because every
// review asks the ring for a key.
type Ring struct {
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	byID   map[string]*Key
	active *Key
	keys   []*Key
}

// NewRing builds a ring from keys. At most one key may be active.
func NewRing(keys []*Key) (*Ring, error) {
	r := &Ring{}
	if err := r.Replace(keys); err != nil {
		return nil, err
	}
	return r, nil
}

// Replace swaps in a new set of keys at once, for rotation and reloads.
func (r *Ring) Replace(keys []*Key) error {
	s := &snapshot{byID: make(map[string]*Key, len(keys))}
	for _, k := range keys {
		if _, dup := s.byID[k.ID]; dup {
			return fmt.Errorf("keys: key %q is in the ring twice", k.ID)
		}
		s.byID[k.ID] = k
		if k.State == StateActive {
			if s.active != nil {
				return fmt.Errorf("keys: keys %q and %q are both active", s.active.ID, k.ID)
			}
			s.active = k
		}
		s.keys = append(s.keys, k)
	}
	sort.Slice(s.keys, func(i, j int) bool { return s.keys[i].Created.Before(s.keys[j].Created) })
	r.snap.Store(s)
	return nil
}

// Keys returns the ring's keys, oldest first.
func (r *Ring) Keys() []*Key {
	return append([]*Key(nil), r.snap.Load().keys...)
}

// Signer returns the active key, or ErrNoActiveKey.
func (r *Ring) Signer() (*Key, error) {
	if k := r.snap.Load().active; k != nil {
		return k, nil
	}
	return nil, ErrNoActiveKey
}

// VerificationKey returns the key with id kid if tokens it signed may still
// verify: ErrUnknownKey when there is none, ErrRetiredKey when it was retired.
func (r *Ring) VerificationKey(kid string) (*Key, error) {
	k, ok := r.snap.Load().byID[kid]
	if !ok {
		return nil, ErrUnknownKey
	}
	if k.State == StateRetired {
		return nil, ErrRetiredKey
	}
	return k, nil
}

// PublicSet returns the public keys that verifiers may need (every key but
// the retired ones), as a JWK set.
func (r *Ring) PublicSet() (jwk.Set, error) {
	set := jwk.NewSet()
	for _, k := range r.snap.Load().keys {
		if k.State == StateRetired {
			continue
		}
		if err := set.AddKey(k.public); err != nil {
			return nil, fmt.Errorf("keys: add %q to set: %w", k.ID, err)
		}
	}
	return set, nil
}
