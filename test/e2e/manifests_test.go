package e2e

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDeployManifestsDryRun applies every overlay of deploy/ with a
// server-side dry run against a real kube-apiserver: every object is
// admitted and validated as it would be for real.
func TestDeployManifestsDryRun(t *testing.T) {
	c := newCluster(t)
	api := c.startKubeAPIServer(filepath.Join(c.portcullis.dir, "webhook.kubeconfig"), "v1")
	// Server-side dry runs of namespaced objects need their namespace.
	c.apply(api, "apiVersion: v1\nkind: Namespace\nmetadata: {name: portcullis}\n")
	root := filepath.Join(repoRoot(t), "deploy")
	for _, overlay := range []string{"single", "ha"} {
		out, err := c.kubectl(api, adminToken, "apply", "--dry-run=server", "-k", filepath.Join(root, "overlays", overlay))
		if err != nil {
			t.Fatalf("overlay %s: %v\n%s", overlay, err, out)
		}
		for _, want := range []string{"deployment.apps/portcullis", "apiservice.apiregistration.k8s.io/v1.token.kubevirt.io", "clusterrole.rbac.authorization.k8s.io/portcullis:user-tokens"} {
			if !strings.Contains(out, want) {
				t.Fatalf("overlay %s: %q missing from\n%s", overlay, want, out)
			}
		}
	}
	out, err := c.kubectl(api, adminToken, "apply", "--dry-run=server", "-k", filepath.Join(root, "vnc-proxy"))
	if err != nil {
		t.Fatalf("vnc-proxy: %v\n%s", err, out)
	}
	for _, want := range []string{"deployment.apps/portcullis-vnc-proxy", "clusterrole.rbac.authorization.k8s.io/portcullis:vnc-proxy", "service/portcullis-vnc-proxy"} {
		if !strings.Contains(out, want) {
			t.Fatalf("vnc-proxy: %q missing from\n%s", want, out)
		}
	}
	// ServiceAccount admission wants kube-system's default account, which
	// kube-controller-manager (not run here) creates.
	c.apply(api, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: kube-system}\n")
	out, err = c.kubectl(api, adminToken, "apply", "--dry-run=server", "-f", filepath.Join(root, "control-plane", "portcullis-webhook.yaml"))
	if err != nil || !strings.Contains(out, "pod/portcullis-webhook") {
		t.Fatalf("control-plane static pod: %q %v", out, err)
	}
}

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
