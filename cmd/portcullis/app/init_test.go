package app

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/keys"
)

func TestInitWritesEverythingPrivateKeysOnly0600(t *testing.T) {
	dir := initDir(t)
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		public := strings.HasSuffix(path, ".crt")
		if perm := info.Mode().Perm(); !public && perm != 0o600 {
			t.Errorf("%s has mode %o, want 0600", path, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("init's config does not validate: %v", err)
	}
	// The signing keys live in the store, sealed with the key-encryption
	// key init wrote; the config names it.
	if want := "file:" + filepath.Join(dir, config.KEKFile); cfg.KeyEncryption.Provider != want {
		t.Fatalf("key-encryption provider = %q, want %q", cfg.KeyEncryption.Provider, want)
	}
	if _, err := keys.ReadKEKFile(filepath.Join(dir, config.KEKFile)); err != nil {
		t.Fatal(err)
	}

	wh, err := clientcmd.LoadFromFile(filepath.Join(dir, WebhookKubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	cluster := wh.Clusters[wh.Contexts[wh.CurrentContext].Cluster]
	if !strings.HasSuffix(cluster.Server, "/authenticate") || !strings.HasPrefix(cluster.Server, "https://127.0.0.1:") || len(cluster.CertificateAuthorityData) == 0 {
		t.Fatalf("webhook kubeconfig cluster = %+v", cluster)
	}
	user := wh.AuthInfos[wh.Contexts[wh.CurrentContext].AuthInfo]
	if len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0 {
		t.Fatal("webhook kubeconfig has no embedded client certificate")
	}

	admin := readCert(t, filepath.Join(dir, adminBase+".crt"))
	if admin.Subject.CommonName != AdminUser || !slices.Equal(admin.Subject.Organization, []string{AdminGroup}) {
		t.Fatalf("admin certificate subject = %v", admin.Subject)
	}
	serving := readCert(t, filepath.Join(dir, servingBase+".crt"))
	if serving.VerifyHostname("127.0.0.1") != nil || serving.VerifyHostname("localhost") != nil {
		t.Fatalf("serving certificate does not cover the hosts: %v %v", serving.IPAddresses, serving.DNSNames)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestInitRefusesToOverwrite(t *testing.T) {
	dir := initDir(t)
	before, _ := os.ReadFile(filepath.Join(dir, caBase+".key"))
	kekBefore, _ := os.ReadFile(filepath.Join(dir, config.KEKFile))
	o := NewInitOptions()
	o.Dir = dir
	err := RunInit(o, io.Discard, clock.RealClock{}, rand.Reader)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second init = %v, want a refusal naming --force", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, caBase+".key"))
	if string(before) != string(after) {
		t.Fatal("a refused init changed the CA key")
	}
	o.Force = true
	if err := RunInit(o, io.Discard, clock.RealClock{}, rand.Reader); err != nil {
		t.Fatalf("init --force: %v", err)
	}
	forced, _ := os.ReadFile(filepath.Join(dir, caBase+".key"))
	if string(forced) == string(before) {
		t.Fatal("init --force kept the old CA key")
	}
	if info, _ := os.Stat(filepath.Join(dir, caBase+".key")); info.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode after --force = %o", info.Mode().Perm())
	}
	if kek, _ := os.ReadFile(filepath.Join(dir, config.KEKFile)); string(kek) != string(kekBefore) {
		t.Fatal("init --force replaced the key-encryption key: the sealed ring would be lost")
	}
}
