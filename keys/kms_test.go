package keys_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"portcullis.dev/portcullis/store/bolt/bolttest"

	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/keys/keystest"
)

func newRing(t *testing.T) *keys.Ring {
	t.Helper()
	r, err := keys.NewRing(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestKMSOutage: with the ring sealed by a KMS v2 plugin, a stopped plugin
// stops neither reviews (public keys) nor signing with an unsealed key; a
// rotation fails with ErrSealed and goes through once the plugin is back.
// A replica that starts during the outage loads the ring and verifies; it
// signs once the plugin answers.
func TestKMSOutage(t *testing.T) {
	plugin := keystest.StartKMSPlugin(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	enc, err := keys.OpenEncryption(ctx, plugin.Provider(), 500*time.Millisecond, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := bolttest.Open(t)
	opts := keys.ManagerOptions{Store: s, Encryption: enc, Clock: clock.RealClock{}, Rand: rand.Reader}
	m := keys.NewManager(newRing(t), opts)
	if err := m.Load(ctx, ""); err != nil {
		t.Fatal(err)
	}
	active, err := m.Ring().Signer()
	if err != nil || active.Private() == nil {
		t.Fatalf("the first key does not sign: %v", err)
	}
	stored, _ := s.GetKeyRing(ctx)
	if stored.Keys[0].Private.Provider != "kms" || stored.Keys[0].Private.KeyID == "" {
		t.Fatalf("the key was not sealed by the plugin: %+v", stored.Keys[0].Private)
	}

	plugin.Stop()
	if _, err := m.Ring().VerificationKey(active.ID); err != nil {
		t.Fatalf("verification during the outage: %v", err)
	}
	if _, err := m.Rotate(ctx, "", true); !errors.Is(err, keys.ErrSealed) {
		t.Fatalf("rotate during the outage = %v, want ErrSealed", err)
	}
	if signer, _ := m.Ring().Signer(); signer.ID != active.ID || signer.Private() == nil {
		t.Fatal("a failed rotation changed the signer")
	}
	late := keys.NewManager(newRing(t), opts)
	if err := late.Load(ctx, ""); !errors.Is(err, keys.ErrSealed) {
		t.Fatalf("a replica starting during the outage: Load = %v, want ErrSealed (ring loaded, key sealed)", err)
	}
	if _, err := late.Ring().VerificationKey(active.ID); err != nil {
		t.Fatalf("a replica started during the outage does not verify: %v", err)
	}
	if k, _ := late.Ring().Signer(); k.Private() != nil {
		t.Fatal("a sealed key has a private half")
	}

	plugin.Start()
	// gRPC reconnects with a backoff: the first calls may still time out.
	var rotated *keys.Key
	for range 50 {
		if rotated, err = m.Rotate(ctx, "", true); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("rotate after the plugin came back: %v", err)
	}
	// The late replica follows the ring and unseals what it signs with.
	go late.Run(ctx, 50*time.Millisecond)
	for range 500 {
		if k, _ := late.Ring().Signer(); k.ID == rotated.ID && k.Private() != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the late replica does not sign with the rotated key")
}
