package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/keys"
)

// writeRevocation writes a Revocation manifest of a subject into dir.
func writeRevocation(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte("apiVersion: portcullis.dev/v1alpha1\nkind: Revocation\nmetadata: {name: "+name+"}\nspec: {subject: system:serviceaccount:ci:nobody}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// revoke runs `portcullis revoke` with the admin kubeconfig.
func revoke(t *testing.T, kubeconfig string, args ...string) {
	t.Helper()
	if _, err := run(t, portcullisBin, append([]string{"revoke", "--kubeconfig", kubeconfig}, args...)...); err != nil {
		t.Fatal(err)
	}
}

// expiredToken signs an expired token with the real signing key: a token
// Portcullis issued an hour ago for ten minutes looks exactly like this. (The
// TokenRequest API cannot mint one shorter than 10 minutes, and the process's
// clock is real.)
func expiredToken(t *testing.T, dir string) string {
	t.Helper()
	ring, err := keys.LoadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{"iss": "https://portcullis.portcullis.svc", "sub": "system:serviceaccount:ci:old",
		"aud": []string{apiAudience}, "iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix(),
		"exp": now.Add(-50 * time.Minute).Unix(), "jti": "expired-jti"})
	signed, err := jws.Sign(payload, jws.WithKey(ring[0].Algorithm, ring[0].Private()))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// withoutClientCert writes a copy of the webhook kubeconfig with the client
// certificate removed.
func withoutClientCert(t *testing.T, path string) string {
	t.Helper()
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range kc.AuthInfos {
		u.ClientCertificateData, u.ClientKeyData = nil, nil
	}
	out := filepath.Join(t.TempDir(), "webhook-no-cert.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, out); err != nil {
		t.Fatal(err)
	}
	return out
}
