package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2"
	kmsservice "k8s.io/kms/pkg/service"
)

// KEKSize is the size of a key-encryption key file: an AES-256 key.
const KEKSize = 32

// DefaultKMSTimeout bounds one call to a KMS plugin.
const DefaultKMSTimeout = 3 * time.Second

// ErrSealed means a private key is in the ring but could not be unsealed:
// the key-encryption provider did not answer. Public keys still verify.
var ErrSealed = errors.New("keys: the signing key is sealed and the key-encryption provider cannot unwrap it")

// Encryption is a key-encryption provider: it wraps the data key of every
// private key in the ring with a key-encryption key the store never sees.
// It speaks the Kubernetes KMS v2 service interface, so a file key and a
// KMS v2 plugin (Vault, a cloud KMS, an HSM) are used the same way.
type Encryption struct {
	// Name is the provider's kind, "file" or "kms", kept with each sealed key.
	Name    string
	service kmsservice.Service
}

// NewEncryption wraps a KMS v2 service as the provider named name.
func NewEncryption(name string, service kmsservice.Service) *Encryption {
	return &Encryption{Name: name, service: service}
}

// OpenEncryption opens the provider spec names: file:PATH (a 32-byte
// AES-256-GCM key file, mode 0600) or kms:unix:///path.sock (a Kubernetes
// KMS v2 plugin). The connection to a plugin lives until ctx is done.
// random gives the nonces of the file provider.
func OpenEncryption(ctx context.Context, spec string, timeout time.Duration, random io.Reader) (*Encryption, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "file":
		kek, err := ReadKEKFile(arg)
		if err != nil {
			return nil, err
		}
		return NewEncryption("file", NewAESService(kek, random)), nil
	case "kms":
		if timeout <= 0 {
			timeout = DefaultKMSTimeout
		}
		svc, err := kmsv2.NewGRPCService(ctx, arg, "portcullis", timeout)
		if err != nil {
			return nil, fmt.Errorf("keys: KMS plugin %s: %w", arg, err)
		}
		return NewEncryption("kms", svc), nil
	}
	return nil, fmt.Errorf("keys: key-encryption provider %q: expected file:PATH or kms:unix:///PATH", spec)
}

// ReadKEKFile reads a key-encryption key file: exactly KEKSize bytes,
// readable by its owner only.
func ReadKEKFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keys: key-encryption key %s does not exist: `portcullis init` writes one; to add one to an existing installation: (umask 077; head -c %d /dev/urandom > %s)", path, KEKSize, path)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: key-encryption key: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keys: key-encryption key %s has mode %o, expected 0600", path, info.Mode().Perm())
	}
	kek, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: key-encryption key: %w", err)
	}
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("keys: key-encryption key %s holds %d bytes, expected %d", path, len(kek), KEKSize)
	}
	return kek, nil
}

// WriteKEKFile writes a new random key-encryption key to path, mode 0600.
func WriteKEKFile(path string, random io.Reader) error {
	kek := make([]byte, KEKSize)
	if _, err := io.ReadFull(random, kek); err != nil {
		return fmt.Errorf("keys: key-encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return writeFileAtomic(path, kek, 0o600)
}

// AESService is a KMS v2 service on a local AES-256-GCM key: the file
// provider, and in tests the key a KMS plugin keeps in its HSM.
type AESService struct {
	aead   cipher.AEAD
	keyID  string
	random io.Reader
}

var _ kmsservice.Service = (*AESService)(nil)

// NewAESService returns the service for a KEKSize-byte key, drawing
// nonces from random. Its key id is a hash of the key, so a data key
// wrapped by another key is told apart.
func NewAESService(kek []byte, random io.Reader) *AESService {
	block, err := aes.NewCipher(kek)
	if err != nil {
		panic(fmt.Sprintf("keys: AES key of %d bytes: %v", len(kek), err)) // callers pass KEKSize bytes
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(append([]byte("portcullis kek id\x00"), kek...))
	return &AESService{aead: aead, keyID: "aes-" + hex.EncodeToString(sum[:8]), random: random}
}

// Encrypt implements kmsservice.Service. The nonce is random: AES-GCM with
// random nonces is safe for far more keys than a ring will ever hold.
func (s *AESService) Encrypt(_ context.Context, _ string, data []byte) (*kmsservice.EncryptResponse, error) {
	ct, err := sealAEAD(s.aead, s.random, data, []byte(s.keyID))
	if err != nil {
		return nil, err
	}
	return &kmsservice.EncryptResponse{Ciphertext: ct, KeyID: s.keyID}, nil
}

// Decrypt implements kmsservice.Service.
func (s *AESService) Decrypt(_ context.Context, _ string, req *kmsservice.DecryptRequest) ([]byte, error) {
	if req.KeyID != s.keyID {
		return nil, fmt.Errorf("keys: data key was wrapped by key-encryption key %q, this provider holds %q", req.KeyID, s.keyID)
	}
	return openAEAD(s.aead, req.Ciphertext, []byte(s.keyID))
}

// Status implements kmsservice.Service.
func (s *AESService) Status(context.Context) (*kmsservice.StatusResponse, error) {
	return &kmsservice.StatusResponse{Version: "v2", Healthz: "ok", KeyID: s.keyID}, nil
}

// sealAEAD encrypts plaintext under a fresh random nonce, put before the
// ciphertext; aad binds it to its context.
func sealAEAD(aead cipher.AEAD, random io.Reader, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(random, nonce); err != nil {
		return nil, fmt.Errorf("keys: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

func openAEAD(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("keys: sealed data is too short")
	}
	out, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("keys: unseal: %w", err)
	}
	return out, nil
}
