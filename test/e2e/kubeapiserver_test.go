package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKubeAPIServer runs Portcullis as the token webhook of real
// kube-apiservers (one asking in v1, one in v1beta1) and as an aggregated API
// server behind them.
func TestKubeAPIServer(t *testing.T) {
	c := newCluster(t)
	webhook := filepath.Join(c.portcullis.dir, "webhook.kubeconfig")
	// Portcullis does not need kube-apiserver to start: it asks it only when
	// a request needs TokenReview or SubjectAccessReview.
	v1 := c.startKubeAPIServer(webhook, "v1")
	c.servePortcullis(v1)
	v1beta1 := c.startKubeAPIServer(webhook, "v1beta1")
	c.registerAggregation(v1)
	admin := filepath.Join(c.portcullis.dir, "admin.kubeconfig")
	kubectl := tool(t, "kubectl")

	// mint uses the real kubectl against the issuer, as the admin.
	// Cluster-connected, the ServiceAccount must exist, as at kube-apiserver.
	ensureSA := func(ns, name string) {
		c.kubectlQuiet(v1, adminToken, "create", "namespace", ns)
		c.kubectlQuiet(v1, adminToken, "create", "serviceaccount", name, "-n", ns)
	}
	mint := func(t *testing.T, ns, name string) string {
		t.Helper()
		ensureSA(ns, name)
		out, err := run(t, kubectl, "--kubeconfig", admin, "create", "token", name, "-n", ns)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	whoami := func(api *kubeAPIServer, token string) (string, error) {
		return c.kubectlQuiet(api, token, "auth", "whoami")
	}

	t.Run("kubectl create token authenticates at kube-apiserver", func(t *testing.T) {
		for name, api := range map[string]*kubeAPIServer{"v1": v1, "v1beta1": v1beta1} {
			token := mint(t, "ci", "builder-"+name)
			out, err := whoami(api, token)
			if err != nil {
				t.Fatalf("webhook %s: whoami: %v", name, err)
			}
			for _, want := range []string{"system:serviceaccount:ci:builder-" + name, "system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"} {
				if !strings.Contains(out, want) {
					t.Fatalf("webhook %s: whoami printed\n%s\nwithout %q", name, out, want)
				}
			}
		}
	})

	t.Run("bad, expired and revoked tokens get 401", func(t *testing.T) {
		assert401 := func(what, token string) {
			t.Helper()
			out, err := whoami(v1, token)
			if err == nil || !strings.Contains(err.Error(), "Unauthorized") {
				t.Fatalf("%s: whoami = %q, %v; want 401 Unauthorized", what, out, err)
			}
		}
		assert401("bad token", "not-a-token")
		assert401("expired token", expiredToken(t, c.portcullis.dir))

		// Revoked before kube-apiserver ever saw it: refused at once.
		fresh := mint(t, "ci", "revoked-early")
		revoke(t, admin, "--jti", jtiOf(fresh))
		assert401("token revoked before first use", fresh)

		// Used, then revoked: kube-apiserver keeps its success for the cache
		// TTL (1s here) plus its own fixed 10s, then asks again.
		used := mint(t, "ci", "revoked-late")
		if _, err := whoami(v1, used); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
		revokedAt := time.Now()
		revoke(t, admin, "--jti", jtiOf(used))
		var refusedAfter time.Duration
		for range 60 {
			if _, err := whoami(v1, used); err != nil && strings.Contains(err.Error(), "Unauthorized") {
				refusedAfter = time.Since(revokedAt)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if refusedAfter == 0 {
			t.Fatal("kube-apiserver still accepts a revoked token after 30s")
		}
		t.Logf("a used token was refused by kube-apiserver %v after its revocation (cache TTL 1s + 10s success cache)", refusedAfter.Round(100*time.Millisecond))
	})

	t.Run("Portcullis down: 401, then recovery without restarting kube-apiserver", func(t *testing.T) {
		token := mint(t, "ci", "outage")
		c.portcullis.proc.stop(syscall.SIGTERM)
		if _, err := whoami(v1, token); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("Portcullis down: whoami err = %v, want 401 (fail closed)", err)
		}
		c.servePortcullis(v1)
		var out string
		var err error
		for range 20 {
			if out, err = whoami(v1, token); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil || !strings.Contains(out, "system:serviceaccount:ci:outage") {
			t.Fatalf("after Portcullis came back: %q, %v", out, err)
		}
	})

	t.Run("kube-apiserver without the webhook client certificate is refused", func(t *testing.T) {
		noCert := withoutClientCert(t, webhook)
		api := c.startKubeAPIServer(noCert, "v1")
		token := mint(t, "ci", "no-client-cert")
		if _, err := whoami(api, token); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("kube-apiserver without a client certificate: err = %v, want 401", err)
		}
		if logs := c.portcullis.proc.logs.String(); !strings.Contains(logs, "TLS handshake error") {
			t.Fatalf("Portcullis' debug log does not show the refused handshake:\n%s", tail(logs, 2000))
		}
		if _, err := whoami(v1, token); err != nil {
			t.Fatalf("the same token at the kube-apiserver with the certificate: %v", err)
		}
		api.proc.stop(syscall.SIGTERM)
	})

	t.Run("user tokens: the seed's examples, directly and through the aggregation layer", func(t *testing.T) {
		issuer := []string{"--server", "https://127.0.0.1:" + itoa(c.portcullis.securePort), "--certificate-authority", filepath.Join(c.portcullis.dir, "ca.crt")}
		aggregated := []string{"--server", "https://127.0.0.1:" + itoa(v1.port), "--certificate-authority", v1.ca}
		for name, base := range map[string][]string{"issuer": issuer, "aggregation": aggregated} {
			t.Run(name, func(t *testing.T) {
				value := runSeedExamples(t, append(base, "--token", aliceToken), append(base, "--token", sysAdminToken))
				// The token made by the seed's create example is alice at kube-apiserver.
				out, err := whoami(v1, value)
				if err != nil || !regexp.MustCompile(`Username\s+alice`).MatchString(out) || !strings.Contains(out, "developers") {
					t.Fatalf("whoami with alice's user token: %q %v", out, err)
				}
				// Delete, disable and ttl-into-the-past each stop a token (never
				// reviewed before, so kube-apiserver has nothing cached).
				for _, stop := range [][]string{
					{"delete", "tokens.ext.cattle.io"},
					{"patch", "tokens.ext.cattle.io", "--type", "merge", "-p", `{"spec":{"enabled":false}}`},
					{"patch", "tokens.ext.cattle.io", "--type", "merge", "-p", `{"spec":{"ttl":1}}`},
				} {
					out, stderr, err := kubectlAt(t, append(base, "--token", aliceToken), "apiVersion: ext.cattle.io/v1\nkind: Token\n", nil, "create", "-o", "jsonpath={.metadata.name} {.status.value}", "-f", "-")
					if err != nil {
						t.Fatalf("create: %s %v", stderr, err)
					}
					fields := strings.Fields(out)
					args := append(append([]string{}, stop[:2]...), fields[0])
					args = append(args, stop[2:]...)
					if _, stderr, err := kubectlAt(t, append(base, "--token", aliceToken), "", nil, args...); err != nil {
						t.Fatalf("%v: %s %v", args, stderr, err)
					}
					if _, err := whoami(v1, fields[1]); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
						t.Fatalf("after %v the token still authenticates: %v", stop[:2], err)
					}
				}
			})
		}
	})

	t.Run("user tokens: RBAC decides who may hold them", func(t *testing.T) {
		issuer := []string{"--server", "https://127.0.0.1:" + itoa(c.portcullis.securePort), "--certificate-authority", filepath.Join(c.portcullis.dir, "ca.crt")}
		aggregated := []string{"--server", "https://127.0.0.1:" + itoa(v1.port), "--certificate-authority", v1.ca}
		create := func(base []string) (string, string, error) {
			return kubectlAt(t, append(base, "--token", bobToken), "apiVersion: ext.cattle.io/v1\nkind: Token\n", nil, "create", "-o", "jsonpath={.metadata.name}", "-f", "-")
		}
		// bob holds no binding to portcullis:user-tokens: every verb is 403,
		// directly and through the aggregation layer.
		for name, base := range map[string][]string{"issuer": issuer, "aggregation": aggregated} {
			for verb, args := range map[string][]string{
				"list":   {"get", "tokens.ext.cattle.io"},
				"delete": {"delete", "tokens.ext.cattle.io", "token-doesnotexist"},
			} {
				if _, stderr, err := kubectlAt(t, append(base, "--token", bobToken), "", nil, args...); err == nil || !strings.Contains(stderr, "Forbidden") {
					t.Fatalf("%s: bob's %s printed %q, %v; want 403 Forbidden", name, verb, stderr, err)
				}
			}
			if _, stderr, err := create(base); err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, `User "bob"`) {
				t.Fatalf("%s: bob's create printed %q, %v; want 403 Forbidden from RBAC", name, stderr, err)
			}
		}
		// Bound to the role, bob gets his token (the delegated authorizer
		// caches a "no" for 10 s: poll, bounded).
		c.apply(v1, `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:user-tokens:bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis:user-tokens}
subjects: [{kind: User, name: bob}]
`)
		var out, stderr string
		var err error
		for range 60 {
			if out, stderr, err = create(issuer); err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil || !strings.HasPrefix(out, "token-") {
			t.Fatalf("bob bound to portcullis:user-tokens: create printed %q %q, %v; want 201", out, stderr, err)
		}
		name := out
		if out, stderr, err := kubectlAt(t, append(aggregated, "--token", bobToken), "", nil, "get", "tokens.ext.cattle.io", "-o", "name"); err != nil || strings.TrimSpace(out) != "token.ext.cattle.io/"+name {
			t.Fatalf("bob lists through aggregation: %q %q %v; want only his token %s", out, stderr, err, name)
		}
	})

	t.Run("VNC tokens: the seed's curl, directly and through the aggregation layer", func(t *testing.T) {
		kubeCA, err := os.ReadFile(v1.ca)
		if err != nil {
			t.Fatal(err)
		}
		issuerCA, _ := os.ReadFile(filepath.Join(c.portcullis.dir, "ca.crt"))
		for name, target := range map[string]struct {
			url string
			ca  []byte
		}{
			"aggregation": {"https://127.0.0.1:" + itoa(v1.port), kubeCA},
			"issuer":      {"https://127.0.0.1:" + itoa(c.portcullis.securePort), issuerCA},
		} {
			t.Run(name, func(t *testing.T) {
				ca := filepath.Join(t.TempDir(), "ca.crt")
				os.WriteFile(ca, target.ca, 0o600)
				// The seed's example, with ${KUBERNETES_USER_TOKEN} alice's token.
				curl := func(user, vm, duration string) (int, string) {
					t.Helper()
					out, err := runQuiet("curl", "-sS", "--cacert", ca, "-w", "\n%{http_code}",
						"--header", "Authorization: Bearer "+user,
						target.url+"/apis/token.kubevirt.io/v1/namespaces/vms/virtualmachines/"+vm+"/vnc?duration="+duration)
					if err != nil {
						t.Fatal(err)
					}
					out = strings.TrimSpace(out)
					i := strings.LastIndexByte(out, '\n')
					n, _ := strconv.Atoi(out[i+1:])
					return n, strings.TrimSpace(out[:max(i, 0)])
				}
				code, body := curl(aliceToken, "fedora", "1h")
				var answer struct {
					Token               string `json:"token"`
					ExpirationTimestamp string `json:"expirationTimestamp"`
				}
				if err := json.Unmarshal([]byte(body), &answer); code != 200 || err != nil || answer.Token == "" || answer.ExpirationTimestamp == "" {
					t.Fatalf("curl: %d %s", code, body)
				}
				if code, body := curl(aliceToken, "fedora", "9m59s"); code != 400 || !strings.Contains(body, `9m59s`) || !strings.Contains(body, "too short") {
					t.Fatalf("too short: %d %s", code, body)
				}
				if code, _ := curl(bobToken, "fedora", "1h"); code != 403 {
					t.Fatalf("bob, no RBAC: %d, want 403", code)
				}
				// kubectl auth whoami with the VNC token: KubeVirt's identity.
				out, err := whoami(v1, answer.Token)
				if err != nil || !strings.Contains(out, "system:serviceaccount:vms:fedora-vnc-access") || !strings.Contains(out, "system:serviceaccounts:vms") {
					t.Fatalf("whoami with a VNC token: %q %v", out, err)
				}
			})
		}
	})

	t.Run("VNC tokens in cluster-connected mode: the VM, its ServiceAccount, revocation by deleting it", func(t *testing.T) {
		vncKubeconfig := c.kubeconfig(v1, aliceToken)
		mintVNC := func(vm string) (string, error) {
			var out strings.Builder
			err := runTo(&out, portcullisBin, "vnc", "--kubeconfig", vncKubeconfig, "vms/"+vm, "--duration", "1h")
			return strings.TrimSpace(out.String()), err
		}
		if _, err := mintVNC("ghost"); err == nil || !strings.Contains(err.Error(), "VirtualMachine does not exist") {
			t.Fatalf("a VM that does not exist: %v, want 404", err)
		}
		fedora, err := mintVNC("fedora")
		if err != nil {
			t.Fatal(err)
		}
		centos, err := mintVNC("centos")
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{"serviceaccount", "role", "rolebinding"} {
			out, err := c.kubectl(v1, adminToken, "get", kind, "-n", "vms", "fedora-vnc-access", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}")
			if err != nil || out != "VirtualMachine/fedora" {
				t.Fatalf("%s fedora-vnc-access: owner %q, %v; want VirtualMachine/fedora", kind, out, err)
			}
		}
		// The seed's revocation: delete the ServiceAccount.
		if _, err := c.kubectl(v1, adminToken, "delete", "serviceaccount", "--namespace", "vms", "fedora-vnc-access"); err != nil {
			t.Fatal(err)
		}
		var refused bool
		for range 40 {
			if _, err := whoami(v1, fedora); err != nil && strings.Contains(err.Error(), "Unauthorized") {
				refused = true
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if !refused {
			t.Fatal("fedora's token still authenticates after its ServiceAccount was deleted")
		}
		if out, err := whoami(v1, centos); err != nil || !strings.Contains(out, "centos-vnc-access") {
			t.Fatalf("centos' token after fedora's revocation: %q %v", out, err)
		}
		again, err := mintVNC("fedora")
		if err != nil {
			t.Fatal(err)
		}
		if out, err := whoami(v1, again); err != nil || !strings.Contains(out, "fedora-vnc-access") {
			t.Fatalf("a new fedora token (ServiceAccount recreated): %q %v", out, err)
		}
	})

	t.Run("vnc-proxy's kubevirt backend: consoles through kube-apiserver as the proxy, ended by deleting the VM's ServiceAccount", func(t *testing.T) {
		testKubeVirtBackend(t, c, v1)
	})

	t.Run("bound tokens die with their Pod and their ServiceAccount", func(t *testing.T) {
		// reviewDirect asks Portcullis' webhook itself (as kube-apiserver
		// does, with its client certificate): no kube-apiserver cache between.
		reviewDirect := func(token string) bool {
			t.Helper()
			out, err := runQuiet("curl", "-sS", "--cacert", filepath.Join(c.portcullis.dir, "ca.crt"),
				"--cert", filepath.Join(c.portcullis.dir, "kube-apiserver-client.crt"), "--key", filepath.Join(c.portcullis.dir, "kube-apiserver-client.key"),
				"https://127.0.0.1:"+itoa(c.portcullis.webhookPort)+"/authenticate",
				"-d", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Contains(out, `"authenticated":true`)
		}
		refusedSoon := func(what, token string) {
			t.Helper()
			for range 200 {
				if !reviewDirect(token) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("%s: the token still authenticates", what)
		}
		ensureSA("apps", "web")
		ensureSA("apps", "deployer")
		c.apply(v1, `apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: apps}
spec:
  serviceAccountName: web
  automountServiceAccountToken: false
  containers: [{name: c, image: registry.example/web:1}]
`)
		createToken := func(args ...string) (string, error) {
			out, err := runQuiet(kubectl, append([]string{"--kubeconfig", admin, "create", "token", "-n", "apps"}, args...)...)
			return strings.TrimSpace(out), err
		}
		if _, err := createToken("nobody"); err == nil || !strings.Contains(err.Error(), "NotFound") && !strings.Contains(err.Error(), "not found") {
			t.Fatalf("a token for a ServiceAccount that does not exist: %v; want 404", err)
		}
		if _, err := createToken("web", "--bound-object-kind", "Pod", "--bound-object-name", "ghost"); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("a token bound to a Pod that does not exist: %v; want 404", err)
		}
		if _, err := createToken("web", "--bound-object-kind", "Pod", "--bound-object-name", "web-0", "--bound-object-uid", "0000-wrong"); err == nil || !strings.Contains(err.Error(), "UID") {
			t.Fatalf("a token bound to the Pod with the wrong uid: %v; want 409", err)
		}
		used, err := createToken("web", "--bound-object-kind", "Pod", "--bound-object-name", "web-0")
		if err != nil {
			t.Fatal(err)
		}
		podUID, _ := c.kubectlQuiet(v1, adminToken, "get", "pod", "web-0", "-n", "apps", "-o", "jsonpath={.metadata.uid}")
		out, err := c.kubectlQuiet(v1, used, "auth", "whoami", "-o", "json")
		if err != nil || !strings.Contains(out, "system:serviceaccount:apps:web") || !strings.Contains(out, podUID) || !strings.Contains(out, `"web-0"`) {
			t.Fatalf("whoami with a Pod-bound token: %q %v; want the ServiceAccount and the Pod's name and uid", out, err)
		}
		unused, err := createToken("web", "--bound-object-kind", "Pod", "--bound-object-name", "web-0")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.kubectlQuiet(v1, adminToken, "delete", "pod", "web-0", "-n", "apps", "--wait=false"); err != nil {
			t.Fatal(err)
		}
		refusedSoon("the Pod deleted", unused)
		if _, err := c.kubectlQuiet(v1, unused, "auth", "whoami"); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("kube-apiserver with a token of a deleted Pod: %v; want 401", err)
		}

		deployer, err := createToken("deployer")
		if err != nil || !reviewDirect(deployer) {
			t.Fatalf("a token of an existing ServiceAccount: %v", err)
		}
		if _, err := c.kubectlQuiet(v1, adminToken, "delete", "serviceaccount", "deployer", "-n", "apps"); err != nil {
			t.Fatal(err)
		}
		refusedSoon("the ServiceAccount deleted", deployer)
		// Recreated under the same name it is another ServiceAccount (new uid).
		ensureSA("apps", "deployer")
		time.Sleep(time.Second)
		if reviewDirect(deployer) {
			t.Fatal("a token of a deleted ServiceAccount authenticates again once one of the same name is created")
		}
	})

	t.Run("metrics counted what the suite did", func(t *testing.T) {
		resp, err := http.Get("http://127.0.0.1:" + itoa(c.metricsPort) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		// Counters start with the process: these are the ones the subtests
		// after the outage subtest (which restarts Portcullis) move.
		for _, series := range []string{
			`portcullis_reviews_total{reason="",result="authenticated"}`,
			`portcullis_tokens_minted_total{kind="serviceaccount"}`,
			`portcullis_tokens_minted_total{kind="user"}`,
			`portcullis_tokens_minted_total{kind="vnc"}`,
			`portcullis_revocations_total{scope="subject"}`,
		} {
			m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
			if m == nil || string(m[1]) == "0" {
				t.Errorf("%s did not move during the e2e run", series)
			}
		}
	})

	t.Run("aggregation layer: discovery, caller identity and RBAC", func(t *testing.T) {
		out, err := c.kubectl(v1, adminToken, "get", "--raw", "/apis/portcullis.dev/v1alpha1")
		if err != nil || !strings.Contains(out, `"revocations"`) {
			t.Fatalf("get --raw through the aggregation layer: %q %v", out, err)
		}
		// alice may revoke (RBAC): `portcullis revoke` with a kubeconfig for
		// kube-apiserver goes through the aggregation layer, and the issuer
		// records the user kube-apiserver authenticated. (kubectl create -f
		// of a create-only type wants to list CRDs for client-side
		// validation, which alice may not: see docs/kube-apiserver.md.)
		out, err = run(t, portcullisBin, "revoke", "--kubeconfig", c.kubeconfig(v1, aliceToken), "--subject", "system:serviceaccount:ci:nobody", "--reason", "e2e")
		if err != nil || !strings.Contains(out, "created") {
			t.Fatalf("alice revoke through aggregation: %q %v", out, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(out), "revocation.portcullis.dev/"), " created")
		if _, err := c.kubectl(v1, aliceToken, "create", "--validate=false", "-f", writeRevocation(t, c.dir, "by-alice")); err != nil {
			t.Fatalf("alice kubectl create --validate=false through aggregation: %v", err)
		}
		for _, n := range []string{name, "by-alice"} {
			by, err := c.kubectl(v1, aliceToken, "get", "revocation", n, "-o", "jsonpath={.status.revokedBy}")
			if err != nil || by != "alice" {
				t.Fatalf("%s: revokedBy = %q, %v; want the user kube-apiserver authenticated (alice)", n, by, err)
			}
		}
		// bob may not: 403 Status.
		out, err = c.kubectlQuiet(v1, bobToken, "get", "revocations")
		if err == nil || !strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), `User "bob"`) {
			t.Fatalf("bob through aggregation: %q %v; want 403 Forbidden", out, err)
		}
		// Directly at the issuer, the same kube tokens are checked by TokenReview
		// and the same RBAC decides by SubjectAccessReview.
		issuer := "https://127.0.0.1:" + itoa(c.portcullis.securePort)
		ca := filepath.Join(c.portcullis.dir, "ca.crt")
		if out, err := runQuiet(kubectl, "--server", issuer, "--certificate-authority", ca, "--token", aliceToken, "get", "revocations"); err != nil || !strings.Contains(out, "by-alice") {
			t.Fatalf("alice at the issuer: %q %v", out, err)
		}
		if _, err := runQuiet(kubectl, "--server", issuer, "--certificate-authority", ca, "--token", bobToken, "get", "revocations"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Fatalf("bob at the issuer: %v; want 403 from SubjectAccessReview", err)
		}
		if _, err := runQuiet(kubectl, "--server", issuer, "--certificate-authority", ca, "--token", "unknown-token", "get", "revocations"); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("unknown token at the issuer: %v; want 401", err)
		}
	})
}
