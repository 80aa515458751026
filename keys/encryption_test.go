package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
	"portcullis.dev/portcullis/store/etcd"
)

func TestFileProviderRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	if err := WriteKEKFile(path, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("key-encryption key file mode %o, want 0600", info.Mode().Perm())
	}
	enc, err := OpenEncryption(t.Context(), "file:"+path, 0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Generate(jwa.ES256, rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal(t.Context(), enc, rand.Reader, k)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := unseal(t.Context(), enc, k.ID, sealed)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(k.Private())
	got, _ := json.Marshal(priv)
	if !bytes.Equal(got, want) {
		t.Fatal("the unsealed key is not the sealed one")
	}
	// The key id is the additional data: a sealed key moved to another kid
	// does not open.
	if _, err := unseal(t.Context(), enc, "another-kid", sealed); err == nil {
		t.Fatal("a sealed key opened under another key id")
	}
	other := NewEncryption("file", NewAESService(make([]byte, KEKSize), rand.Reader))
	if _, err := unseal(t.Context(), other, k.ID, sealed); !errors.Is(err, ErrSealed) {
		t.Fatalf("unseal with another key-encryption key = %v, want ErrSealed", err)
	}
	os.Chmod(path, 0o644)
	if _, err := OpenEncryption(t.Context(), "file:"+path, 0, rand.Reader); err == nil {
		t.Fatal("a world-readable key-encryption key was accepted")
	}
	if _, err := OpenEncryption(t.Context(), "vault:x", 0, rand.Reader); err == nil {
		t.Fatal("an unknown provider was accepted")
	}
}

// TestStoreHoldsNoPrivateKeyInTheClear scans the bbolt file for each
// private key's bytes, raw and base64url (as a JWK would carry them).
func TestStoreHoldsNoPrivateKeyInTheClear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "portcullis.db")
	s, err := bolt.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(mustRing(t), ManagerOptions{Store: s, Encryption: testEncryption(), Clock: clock.RealClock{}, Rand: rand.Reader})
	if err := m.Load(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	for _, alg := range []jwa.SignatureAlgorithm{jwa.ES256, jwa.EdDSA} {
		if _, err := m.Rotate(t.Context(), alg, true); err != nil {
			t.Fatal(err)
		}
	}
	var secrets [][]byte
	for _, k := range m.Ring().Keys() {
		secrets = append(secrets, privateBytes(t, k)...)
	}
	assertRingSealed(t, s, secrets)
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, "the bbolt file", data, secrets)
}

// assertRingSealed looks for the secrets in every byte field of the stored
// ring, decoded: the store's JSON carries bytes base64-encoded, where a
// scan of the raw file would not see them.
func assertRingSealed(t *testing.T, s store.KeyRings, secrets [][]byte) {
	t.Helper()
	ring, err := s.GetKeyRing(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ring.Keys {
		fields := [][]byte{k.Public, k.Private.DataKey, k.Private.Ciphertext}
		for _, v := range k.Private.Annotations {
			fields = append(fields, v)
		}
		for _, f := range fields {
			assertNoSecrets(t, "the stored key "+k.ID, f, secrets)
		}
	}
}

// privateBytes are a key's secret bytes in the forms a leak would take.
func privateBytes(t *testing.T, k *Key) [][]byte {
	t.Helper()
	var raw any
	if err := k.Private().Raw(&raw); err != nil {
		t.Fatal(err)
	}
	var secret []byte
	switch p := raw.(type) {
	case *ecdsa.PrivateKey:
		b, err := p.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		secret = b
	case []byte:
		secret = p
	default:
		if seed, ok := raw.(interface{ Seed() []byte }); ok {
			secret = seed.Seed()
		} else {
			t.Fatalf("no secret bytes for %T", raw)
		}
	}
	return [][]byte{secret, []byte(base64.RawURLEncoding.EncodeToString(secret))}
}

func assertNoSecrets(t *testing.T, where string, data []byte, secrets [][]byte) {
	t.Helper()
	if len(secrets) == 0 {
		t.Fatal("no secrets to look for")
	}
	for _, secret := range secrets {
		if bytes.Contains(data, secret) {
			t.Fatalf("%s holds private key material in the clear", where)
		}
	}
}

// TestEtcdHoldsNoPrivateKeyInTheClear reads every value under the store's
// etcd prefix and looks for the private keys' bytes.
func TestEtcdHoldsNoPrivateKeyInTheClear(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{testutil.StartEtcd(t)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := NewManager(mustRing(t), ManagerOptions{Store: etcd.New(etcd.Config{Client: c}), Encryption: testEncryption(), Clock: clock.RealClock{}, Rand: rand.Reader})
	if err := m.Load(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rotate(t.Context(), jwa.EdDSA, true); err != nil {
		t.Fatal(err)
	}
	var secrets [][]byte
	for _, k := range m.Ring().Keys() {
		secrets = append(secrets, privateBytes(t, k)...)
	}
	resp, err := c.Get(t.Context(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatal("etcd holds nothing")
	}
	for _, kv := range resp.Kvs {
		assertNoSecrets(t, "etcd key "+string(kv.Key), kv.Value, secrets)
	}
	assertRingSealed(t, m.opts.Store, secrets)
}
