// Package keystest holds what tests of other packages need of keys: fresh
// signing keys and rings, and a real Kubernetes KMS v2 plugin for tests of
// the key ring's envelope encryption.
package keystest

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	kmsservice "k8s.io/kms/pkg/service"

	"portcullis.dev/portcullis/keys"
)

// KMSPlugin is a real KMS v2 plugin server (k8s.io/kms' service package,
// gRPC over a unix socket) whose "HSM" is a local AES key: the one part
// that stands in for an admin's Vault, cloud KMS or HSM.
type KMSPlugin struct {
	t      testing.TB
	socket string
	hsm    *keys.AESService
	server *kmsservice.GRPCService
	done   chan error
}

// StartKMSPlugin starts a plugin; it stops when the test ends.
func StartKMSPlugin(t testing.TB) *KMSPlugin {
	t.Helper()
	kek := make([]byte, keys.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &KMSPlugin{t: t, socket: filepath.Join(dir, "kms.sock"), hsm: keys.NewAESService(kek, rand.Reader)}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start serves on the socket (again, after Stop).
func (p *KMSPlugin) Start() {
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

// Stop stops the plugin: calls to it fail until Start.
func (p *KMSPlugin) Stop() {
	if p.server == nil {
		return
	}
	p.server.Close()
	<-p.done
	os.Remove(p.socket)
	p.server = nil
}

// Provider is the --key-encryption-provider value for the plugin.
func (p *KMSPlugin) Provider() string { return "kms:unix://" + p.socket }
