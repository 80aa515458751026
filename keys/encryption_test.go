package keys

import (
	"bytes"
	"context"
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
	kmsservice "k8s.io/kms/pkg/service"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
	"portcullis.dev/portcullis/store/etcd"
)

// kmsPlugin is a real Kubernetes KMS v2 plugin server (k8s.io/kms'
// service package, gRPC over a unix socket) whose "HSM" is a local AES key:
// the one part that stands in for an admin's Vault or cloud KMS.
type kmsPlugin struct {
	t      *testing.T
	socket string
	hsm    *AESService
	server *kmsservice.GRPCService
	done   chan error
}

func startKMSPlugin(t *testing.T) *kmsPlugin {
	t.Helper()
	kek := make([]byte, KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &kmsPlugin{t: t, socket: filepath.Join(dir, "kms.sock"), hsm: NewAESService(kek, rand.Reader)}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *kmsPlugin) start() {
	p.t.Helper()
	p.server = kmsservice.NewGRPCService(p.socket, 5*time.Second, p.hsm)
	p.done = make(chan error, 1)
	go func() { p.done <- p.server.ListenAndServe() }()
	for range 500 {
		if _, err := os.Stat(p.socket); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatal("the KMS plugin did not listen")
}

func (p *kmsPlugin) stop() {
	if p.server == nil {
		return
	}
	p.server.Close()
	<-p.done
	os.Remove(p.socket)
	p.server = nil
}

func (p *kmsPlugin) endpoint() string { return "kms:unix://" + p.socket }

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

// TestKMSOutage: with the ring sealed by a KMS v2 plugin, a stopped plugin
// stops neither reviews (public keys) nor signing with an unsealed key; a
// rotation fails with ErrSealed and goes through once the plugin is back.
// A replica that starts during the outage loads the ring and verifies; it
// signs once the plugin answers.
func TestKMSOutage(t *testing.T) {
	plugin := startKMSPlugin(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	enc, err := OpenEncryption(ctx, plugin.endpoint(), 500*time.Millisecond, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bolt.Open(filepath.Join(t.TempDir(), "portcullis.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opts := ManagerOptions{Store: s, Encryption: enc, Clock: clock.RealClock{}, Rand: rand.Reader}
	m := NewManager(mustRing(t), opts)
	if err := m.Load(ctx, ""); err != nil {
		t.Fatal(err)
	}
	active, err := m.Ring().Signer()
	if err != nil || active.Private() == nil {
		t.Fatalf("the first key does not sign: %v", err)
	}
	stored, _ := s.GetKeyRing(ctx)
	if stored.Keys[0].Private.Provider != "kms" || stored.Keys[0].Private.KeyID != plugin.hsm.keyID {
		t.Fatalf("the key was not sealed by the plugin: %+v", stored.Keys[0].Private)
	}

	plugin.stop()
	if _, err := m.Ring().VerificationKey(active.ID); err != nil {
		t.Fatalf("verification during the outage: %v", err)
	}
	if _, err := m.Rotate(ctx, "", true); !errors.Is(err, ErrSealed) {
		t.Fatalf("rotate during the outage = %v, want ErrSealed", err)
	}
	if signer, _ := m.Ring().Signer(); signer.ID != active.ID || signer.Private() == nil {
		t.Fatal("a failed rotation changed the signer")
	}
	late := NewManager(mustRing(t), opts)
	if err := late.Load(ctx, ""); !errors.Is(err, ErrSealed) {
		t.Fatalf("a replica starting during the outage: Load = %v, want ErrSealed (ring loaded, key sealed)", err)
	}
	if _, err := late.Ring().VerificationKey(active.ID); err != nil {
		t.Fatalf("a replica started during the outage does not verify: %v", err)
	}
	if k, _ := late.Ring().Signer(); k.Private() != nil {
		t.Fatal("a sealed key has a private half")
	}

	plugin.start()
	// gRPC reconnects with a backoff: the first calls may still time out.
	var rotated *Key
	for range 50 {
		if rotated, err = m.Rotate(ctx, "", true); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("rotate after the plugin came back: %v", err)
	}
	if err := late.Unseal(ctx); err != nil {
		t.Fatal(err)
	}
	stored, _ = s.GetKeyRing(ctx)
	if err := late.apply(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if k, _ := late.Ring().Signer(); k.ID != rotated.ID || k.Private() == nil {
		t.Fatal("the late replica does not sign with the rotated key")
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
