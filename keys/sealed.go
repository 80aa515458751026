package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/lestrrat-go/jwx/v2/jwk"
	kmsservice "k8s.io/kms/pkg/service"

	"portcullis.dev/portcullis/store"
)

// privateKey is a key's private half, shared by every copy of the Key (the
// ring copies keys on each change) so that it is unsealed once.
type privateKey struct {
	mu  sync.Mutex
	key jwk.Key // nil while sealed
}

func (p *privateKey) get() jwk.Key {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key
}

// seal encrypts k's private key with a new data key from random and wraps
// the data key with enc: envelope encryption. The key id is the additional
// data, so a sealed key cannot be passed off as another.
func seal(ctx context.Context, enc *Encryption, random io.Reader, k *Key) (store.SealedKey, error) {
	priv := k.Private()
	if priv == nil {
		return store.SealedKey{}, fmt.Errorf("keys: key %q has no private key to seal", k.ID)
	}
	plaintext, err := json.Marshal(priv)
	if err != nil {
		return store.SealedKey{}, fmt.Errorf("keys: encode %q: %w", k.ID, err)
	}
	defer clear(plaintext)
	dek := make([]byte, 32)
	defer clear(dek)
	if _, err := io.ReadFull(random, dek); err != nil {
		return store.SealedKey{}, fmt.Errorf("keys: data key: %w", err)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return store.SealedKey{}, err
	}
	ct, err := sealAEAD(aead, random, plaintext, []byte(k.ID))
	if err != nil {
		return store.SealedKey{}, err
	}
	wrapped, err := enc.service.Encrypt(ctx, k.ID, dek)
	if err != nil {
		return store.SealedKey{}, fmt.Errorf("%w: wrap the data key of %q: %w", ErrSealed, k.ID, err)
	}
	return store.SealedKey{Provider: enc.Name, KeyID: wrapped.KeyID, DataKey: wrapped.Ciphertext, Annotations: wrapped.Annotations, Ciphertext: ct}, nil
}

// unseal unwraps sk's data key with enc and decrypts the private key of kid.
func unseal(ctx context.Context, enc *Encryption, kid string, sk store.SealedKey) (jwk.Key, error) {
	if sk.Provider != enc.Name {
		return nil, fmt.Errorf("keys: key %q was sealed by a %q key-encryption provider, this replica uses %q", kid, sk.Provider, enc.Name)
	}
	dek, err := enc.service.Decrypt(ctx, kid, &kmsservice.DecryptRequest{Ciphertext: sk.DataKey, KeyID: sk.KeyID, Annotations: sk.Annotations})
	if err != nil {
		return nil, fmt.Errorf("%w: unwrap the data key of %q: %w", ErrSealed, kid, err)
	}
	defer clear(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	plaintext, err := openAEAD(aead, sk.Ciphertext, []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("keys: key %q: %w", kid, err)
	}
	defer clear(plaintext)
	priv, err := jwk.ParseKey(plaintext)
	if err != nil {
		return nil, fmt.Errorf("keys: parse the private key of %q: %w", kid, err)
	}
	return priv, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keys: data key: %w", err)
	}
	return cipher.NewGCM(block)
}
