package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"

	"portcullis.dev/portcullis/authn/authntest"
	"portcullis.dev/portcullis/internal/testutil"
)

// instance is a portcullis process with its init directory.
type instance struct {
	dir         string
	webhookPort int
	securePort  int
	proc        *process
}

// initInstance runs the real `portcullis init` with free ports.
func initInstance(t *testing.T) *instance {
	t.Helper()
	return initInstanceHosts(t, "127.0.0.1,localhost")
}

// initInstanceHosts is initInstance with the serving certificate's hosts.
func initInstanceHosts(t *testing.T, hosts string) *instance {
	t.Helper()
	ports := freePorts(t, 2)
	in := &instance{dir: filepath.Join(t.TempDir(), "p"), webhookPort: ports[0], securePort: ports[1]}
	// Runs after the process stopped: the store file and audit log hold no token.
	t.Cleanup(func() { testutil.CheckNoTokensInTree(t, in.dir, nil) })
	if _, err := run(t, portcullisBin, "init", "--dir", in.dir, "--hosts", hosts,
		"--webhook-port", itoa(in.webhookPort), "--secure-port", itoa(in.securePort),
		"--api-audiences", "https://kubernetes.default.svc.cluster.local"); err != nil {
		t.Fatal(err)
	}
	// An earlier version's key directory, imported at the first start:
	// the test then holds the signing key to forge tokens with.
	authntest.SeedKeyDir(t, filepath.Join(in.dir, "keys"))
	return in
}

// serve starts `portcullis serve` and waits until /readyz answers ok.
func (in *instance) serve(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"serve", "--config", filepath.Join(in.dir, "portcullis.yaml"), "--keys-dir", filepath.Join(in.dir, "keys"),
		"--bind-address", "127.0.0.1", "--log-level", "debug", "--metrics-port", "0",
		"--audit-log-path", filepath.Join(in.dir, "audit.log")}, extra...)
	in.proc = start(t, portcullisBin, args...)
	in.waitReady(t)
}

func (in *instance) httpClient(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(in.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (in *instance) waitReady(t *testing.T) {
	t.Helper()
	c := in.httpClient(t)
	for range 400 {
		resp, err := c.Get("https://127.0.0.1:" + itoa(in.securePort) + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-in.proc.done:
			t.Fatalf("portcullis exited: %v\n%s", in.proc.err, in.proc.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Fatalf("portcullis never became ready:\n%s", in.proc.logs.String())
}

// reviewer is kube-apiserver's webhook authenticator, loaded from init's
// webhook.kubeconfig exactly as kube-apiserver loads it.
func (in *instance) reviewer(t *testing.T, version string) *webhook.WebhookTokenAuthenticator {
	t.Helper()
	cfg, err := webhookutil.LoadKubeconfig(filepath.Join(in.dir, "webhook.kubeconfig"), nil)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := webhook.New(cfg, version, nil, wait.Backoff{Steps: 1, Duration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func TestKubectlCreateTokenAgainstTheIssuer(t *testing.T) {
	kubectl := tool(t, "kubectl")
	in := initInstance(t)
	in.serve(t)

	out, err := run(t, kubectl, "--kubeconfig", filepath.Join(in.dir, "admin.kubeconfig"),
		"create", "token", "builder", "-n", "ci", "--audience", "https://vault.example", "--duration", "1h")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if strings.Count(token, ".") != 2 {
		t.Fatalf("kubectl printed %q, want a token", out)
	}
	for _, version := range []string{"v1", "v1beta1"} {
		ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{"https://vault.example"})
		resp, ok, err := in.reviewer(t, version).AuthenticateToken(ctx, token)
		if err != nil || !ok || resp.User.GetName() != "system:serviceaccount:ci:builder" {
			t.Fatalf("%s: the kubectl token does not authenticate: %v %v %+v", version, ok, err, resp)
		}
		// Minted for the vault audience: not for the Kubernetes API.
		apiCtx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{"https://kubernetes.default.svc.cluster.local"})
		if _, ok, _ := in.reviewer(t, version).AuthenticateToken(apiCtx, token); ok {
			t.Fatalf("%s: a token for https://vault.example authenticated for the API audience", version)
		}
	}

	// The Revocation API works with plain kubectl too.
	rev := filepath.Join(t.TempDir(), "rev.yaml")
	os.WriteFile(rev, []byte("apiVersion: portcullis.dev/v1alpha1\nkind: Revocation\nmetadata:\n  name: builder\nspec:\n  subject: system:serviceaccount:ci:builder\n  reason: e2e\n"), 0o600)
	if out, err := run(t, kubectl, "--kubeconfig", filepath.Join(in.dir, "admin.kubeconfig"), "create", "-f", rev); err != nil || !strings.Contains(out, "revocation.portcullis.dev/builder created") {
		t.Fatalf("kubectl create -f: %q %v", out, err)
	}
	out, err = run(t, kubectl, "--kubeconfig", filepath.Join(in.dir, "admin.kubeconfig"), "get", "revocations")
	if err != nil || !strings.Contains(out, "builder") || !strings.Contains(out, "subject") {
		t.Fatalf("kubectl get revocations: %q %v", out, err)
	}
	ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{"https://vault.example"})
	if _, ok, err := in.reviewer(t, "v1").AuthenticateToken(ctx, token); ok || err != nil {
		t.Fatalf("after kubectl revocation: %v %v", ok, err)
	}

	// SIGTERM shuts down cleanly.
	in.proc.stop(syscall.SIGTERM)
	if in.proc.err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", in.proc.err)
	}
	if strings.Contains(in.proc.logs.String(), strings.Split(token, ".")[2]) {
		t.Fatal("the token value is in the server's log")
	}
}
