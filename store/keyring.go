package store

import (
	"context"
	"errors"
	"time"
)

// ErrConflict is returned by SwapKeyRing when the stored ring is no longer
// the revision the change was made from: read it again and redo the change.
var ErrConflict = errors.New("store: the key ring changed since it was read")

// KeyRing is the signing key ring as the store holds it: public keys in the
// clear, private keys only sealed (see SealedKey). Every replica signs and
// verifies with the same ring.
type KeyRing struct {
	// Revision identifies the stored ring; SwapKeyRing compares it. It is
	// set by the store and is 0 while no ring was ever stored.
	Revision int64 `json:"-"`
	// Keys are the ring's keys.
	Keys []StoredKey `json:"keys"`
}

// StoredKey is one signing key and its place in the ring.
type StoredKey struct {
	// ID is the key id (the public key's RFC 7638 thumbprint).
	ID string `json:"kid"`
	// Algorithm is the JWS algorithm the key signs with.
	Algorithm string `json:"alg"`
	// State is next, active, verifying or retired.
	State string `json:"state"`
	// Created, PromoteAt, DemotedAt and RetiredAt are the key's life.
	Created   time.Time `json:"created"`
	PromoteAt time.Time `json:"promoteAt,omitzero"`
	DemotedAt time.Time `json:"demotedAt,omitzero"`
	RetiredAt time.Time `json:"retiredAt,omitzero"`
	// Public is the public JWK.
	Public []byte `json:"public"`
	// Private is the private JWK, sealed.
	Private SealedKey `json:"private"`
}

// SealedKey is a private key under envelope encryption: encrypted with a
// data key of its own, which is stored only wrapped by a key-encryption key
// that the store never sees (a file or a KMS v2 plugin).
type SealedKey struct {
	// Provider names the key-encryption provider that wrapped the data key.
	Provider string `json:"provider"`
	// KeyID is the key-encryption key's id, as the provider gave it.
	KeyID string `json:"keyID"`
	// DataKey is the wrapped data key.
	DataKey []byte `json:"dataKey"`
	// Annotations are the provider's, kept for unwrapping.
	Annotations map[string][]byte `json:"annotations,omitempty"`
	// Ciphertext is the private JWK, sealed with the data key.
	Ciphertext []byte `json:"ciphertext"`
}

// KeyRings is the part of the store contract that holds the signing key
// ring, shared by every replica.
type KeyRings interface {
	// GetKeyRing returns the stored ring: Revision 0 and no keys when none
	// was ever stored.
	GetKeyRing(ctx context.Context) (*KeyRing, error)
	// SwapKeyRing stores ring if the stored ring's revision is still
	// ring.Revision (0: none stored yet), and returns the new revision;
	// ErrConflict otherwise, changing nothing.
	SwapKeyRing(ctx context.Context, ring *KeyRing) (int64, error)
	// WatchKeyRing sends the stored ring, then every ring stored after it,
	// until ctx is done or the watch breaks; then it closes the channel:
	// watch again, which sends the stored ring first. A watcher that cannot
	// keep up has its channel closed rather than being sent stale rings.
	WatchKeyRing(ctx context.Context) (<-chan *KeyRing, error)
}
