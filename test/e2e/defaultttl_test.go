package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRevocationDelayWithDefaultCacheTTL measures how long kube-apiserver,
// with its default --authentication-token-webhook-cache-ttl (2m), keeps
// accepting a token after Portcullis revoked it. It takes over two minutes,
// so it runs only with PORTCULLIS_E2E_SLOW=1 (make test sets it); it holds
// docs/kube-apiserver.md to its figure.
// documentedDefaultDelay is the worst case docs/kube-apiserver.md states
// for the default webhook cache TTL.
const documentedDefaultDelay = 2*time.Minute + 10*time.Second

func TestRevocationDelayWithDefaultCacheTTL(t *testing.T) {
	if os.Getenv("PORTCULLIS_E2E_SLOW") == "" {
		t.Skip("takes over two minutes; set PORTCULLIS_E2E_SLOW=1")
	}
	c := newCluster(t)
	api := c.startKubeAPIServerCacheTTL(filepath.Join(c.portcullis.dir, "webhook.kubeconfig"), "v1", "")
	c.servePortcullis(api)
	// The RBAC Portcullis needs to read the objects a token is bound to.
	c.registerAggregation(api)
	admin := filepath.Join(c.portcullis.dir, "admin.kubeconfig")
	c.kubectlQuiet(api, adminToken, "create", "namespace", "ns")
	c.kubectlQuiet(api, adminToken, "create", "serviceaccount", "sa", "-n", "ns")
	out, err := run(t, tool(t, "kubectl"), "--kubeconfig", admin, "create", "token", "sa", "-n", "ns")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if _, err := c.kubectlQuiet(api, token, "auth", "whoami"); err != nil {
		t.Fatal(err)
	}
	revoke(t, admin, "--jti", jtiOf(token))
	revokedAt := time.Now()
	for range 400 {
		if _, err := c.kubectlQuiet(api, token, "auth", "whoami"); err != nil && strings.Contains(err.Error(), "Unauthorized") {
			delay := time.Since(revokedAt)
			t.Logf("default cache TTL: the revoked token was still accepted for %v after its revocation", delay.Round(time.Second))
			// docs/kube-apiserver.md promises up to ~2m10s (TTL plus
			// kube-apiserver's own 10 s); a few seconds of kubectl runs on top.
			if delay > documentedDefaultDelay+5*time.Second {
				t.Errorf("the delay %v exceeds the documented %v: fix docs/kube-apiserver.md", delay.Round(time.Second), documentedDefaultDelay)
			}
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatal("the revoked token was still accepted after 400s")
}
