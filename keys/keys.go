package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"portcullis.dev/portcullis/store"
)

// State is where a key stands in its life.
type State string

// The states of a key, in the order a key passes through them.
const (
	// StateNext keys are published but do not sign yet.
	StateNext State = "next"
	// StateActive is the one key that signs new tokens.
	StateActive State = "active"
	// StateVerifying keys no longer sign; tokens they signed still verify.
	StateVerifying State = "verifying"
	// StateRetired keys are refused at once: every token they signed is dead.
	StateRetired State = "retired"
)

// Errors returned by the ring.
var (
	// ErrUnknownKey means no key in the ring has the kid.
	ErrUnknownKey = errors.New("keys: unknown key id")
	// ErrRetiredKey means the key was retired; its tokens are refused.
	ErrRetiredKey = errors.New("keys: key is retired")
	// ErrNoActiveKey means the ring has no key that may sign.
	ErrNoActiveKey = errors.New("keys: no active signing key")
)

// Algorithms lists the signature algorithms Portcullis signs and verifies
// with. It is an allow-list: never "none", never HMAC.
var Algorithms = []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA, jwa.RS256}

// minRSABits is the smallest RSA modulus accepted for RS256.
const minRSABits = 2048

// Key is one signing key with its public half and its state in the ring.
type Key struct {
	// ID is the RFC 7638 SHA-256 thumbprint of the public key, base64url.
	ID string
	// Algorithm is the one signature algorithm this key is used with.
	Algorithm jwa.SignatureAlgorithm
	// State tells whether the key signs, verifies or is refused.
	State State
	// Created is when the key was generated.
	Created time.Time
	// PromoteAt is when a next key becomes active: after verifiers that
	// cache the JWKS have had time to fetch it.
	PromoteAt time.Time
	// DemotedAt is when an active key stopped signing.
	DemotedAt time.Time
	// RetiredAt is when the key was retired.
	RetiredAt time.Time

	// private is shared by the copies of the key; sealed is how the store
	// holds it (zero until stored).
	private *privateKey
	sealed  store.SealedKey
	public  jwk.Key
	raw     crypto.PublicKey
}

// Private returns the JWK private key, with kid and alg set, for signing;
// nil while the key is sealed (see Manager.Unseal).
func (k *Key) Private() jwk.Key { return k.private.get() }

// Public returns the JWK public key, with kid, alg and use set.
func (k *Key) Public() jwk.Key { return k.public }

// RawPublic returns the crypto public key used for signature checks.
func (k *Key) RawPublic() crypto.PublicKey { return k.raw }

// ParseAlgorithm maps a name such as "ES256" to a supported algorithm.
func ParseAlgorithm(name string) (jwa.SignatureAlgorithm, error) {
	for _, alg := range Algorithms {
		if alg.String() == name {
			return alg, nil
		}
	}
	return "", fmt.Errorf("keys: unsupported algorithm %q (supported: ES256, EdDSA, RS256)", name)
}

// Generate makes a new key for alg from the random source.
func Generate(alg jwa.SignatureAlgorithm, random io.Reader, now time.Time) (*Key, error) {
	var raw any
	var err error
	switch alg {
	case jwa.ES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), random)
	case jwa.EdDSA:
		_, raw, err = ed25519.GenerateKey(random)
	case jwa.RS256:
		raw, err = rsa.GenerateKey(random, 3072)
	default:
		return nil, fmt.Errorf("keys: unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: generate %s key: %w", alg, err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("keys: wrap %s key: %w", alg, err)
	}
	return fromPrivate(priv, alg, StateNext, now)
}

// fromPrivate checks a private JWK against alg and derives the key's id and
// public half.
func fromPrivate(priv jwk.Key, alg jwa.SignatureAlgorithm, state State, created time.Time) (*Key, error) {
	if err := checkKeyType(priv, alg); err != nil {
		return nil, err
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("keys: public key: %w", err)
	}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	for _, k := range []jwk.Key{priv, pub} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, fmt.Errorf("keys: set kid: %w", err)
		}
		if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
			return nil, fmt.Errorf("keys: set alg: %w", err)
		}
	}
	if err := pub.Set(jwk.KeyUsageKey, jwk.ForSignature); err != nil {
		return nil, fmt.Errorf("keys: set use: %w", err)
	}
	var raw any
	if err := pub.Raw(&raw); err != nil {
		return nil, fmt.Errorf("keys: raw public key: %w", err)
	}
	return &Key{ID: kid, Algorithm: alg, State: state, Created: created.UTC(), private: &privateKey{key: priv}, public: pub, raw: raw}, nil
}

// fromStored makes a sealed key from its stored form, checking that the
// public key is the one its id names.
func fromStored(sk store.StoredKey) (*Key, error) {
	alg, err := ParseAlgorithm(sk.Algorithm)
	if err != nil {
		return nil, err
	}
	pub, err := jwk.ParseKey(sk.Public)
	if err != nil {
		return nil, fmt.Errorf("keys: parse the public key of %q: %w", sk.ID, err)
	}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	if kid := base64.RawURLEncoding.EncodeToString(thumb); kid != sk.ID {
		return nil, fmt.Errorf("keys: stored key %q holds the public key of %q", sk.ID, kid)
	}
	var raw any
	if err := pub.Raw(&raw); err != nil {
		return nil, fmt.Errorf("keys: raw public key: %w", err)
	}
	return &Key{ID: sk.ID, Algorithm: alg, State: State(sk.State), Created: sk.Created, PromoteAt: sk.PromoteAt,
		DemotedAt: sk.DemotedAt, RetiredAt: sk.RetiredAt, private: &privateKey{}, sealed: sk.Private, public: pub, raw: raw}, nil
}

// stored is k as the store holds it: k must have been sealed.
func (k *Key) stored() (store.StoredKey, error) {
	pub, err := json.Marshal(k.public)
	if err != nil {
		return store.StoredKey{}, fmt.Errorf("keys: encode the public key of %q: %w", k.ID, err)
	}
	return store.StoredKey{ID: k.ID, Algorithm: k.Algorithm.String(), State: string(k.State), Created: k.Created,
		PromoteAt: k.PromoteAt, DemotedAt: k.DemotedAt, RetiredAt: k.RetiredAt, Public: pub, Private: k.sealed}, nil
}

// unsealWith unseals k's private key with enc, once: copies of k share it.
func (k *Key) unsealWith(ctx context.Context, enc *Encryption) error {
	k.private.mu.Lock()
	defer k.private.mu.Unlock()
	if k.private.key != nil {
		return nil
	}
	priv, err := unseal(ctx, enc, k.ID, k.sealed)
	if err != nil {
		return err
	}
	opened, err := fromPrivate(priv, k.Algorithm, k.State, k.Created)
	if err != nil {
		return err
	}
	if opened.ID != k.ID {
		return fmt.Errorf("keys: the sealed private key of %q belongs to %q", k.ID, opened.ID)
	}
	k.private.key = opened.private.key
	return nil
}

// checkKeyType refuses a key whose type does not fit alg, so that a key can
// never be used with an algorithm other than its own.
func checkKeyType(k jwk.Key, alg jwa.SignatureAlgorithm) error {
	var raw any
	if err := k.Raw(&raw); err != nil {
		return fmt.Errorf("keys: raw key: %w", err)
	}
	switch alg {
	case jwa.ES256:
		if p, ok := raw.(*ecdsa.PrivateKey); ok && p.Curve == elliptic.P256() {
			return nil
		}
	case jwa.EdDSA:
		if _, ok := raw.(ed25519.PrivateKey); ok {
			return nil
		}
	case jwa.RS256:
		if p, ok := raw.(*rsa.PrivateKey); ok {
			if p.N.BitLen() < minRSABits {
				return fmt.Errorf("keys: RS256 key has %d bits, expected at least %d", p.N.BitLen(), minRSABits)
			}
			return nil
		}
	default:
		return fmt.Errorf("keys: unsupported algorithm %q", alg)
	}
	return fmt.Errorf("keys: key of type %T does not fit algorithm %s", raw, alg)
}
