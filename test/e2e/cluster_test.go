package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/internal/testutil"
)

// Static users of the test kube-apiserver (--token-auth-file).
const (
	adminToken      = "admin-token"
	portcullisToken = "portcullis-token"
	aliceToken      = "alice-token"
	bobToken        = "bob-token"
	sysAdminToken   = "system-admin-token"
	vncProxyToken   = "vnc-proxy-token"
	apiAudience     = "https://kubernetes.default.svc.cluster.local"
	frontProxyName  = "front-proxy-client"
)

// cluster is etcd, Portcullis (cluster-connected) and kube-apiservers on
// 127.0.0.1, sharing one etcd.
type cluster struct {
	t          *testing.T
	dir        string
	etcdURL    string
	portcullis *instance
	frontProxy struct{ ca, cert, key string }
	saKey      string
	tokenFile  string
	// metricsPort is where Portcullis serves /metrics.
	metricsPort int
}

// kubeAPIServer is one running kube-apiserver.
type kubeAPIServer struct {
	port int
	ca   string
	proc *process
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir()}
	ports := freePorts(t, 2)
	c.etcdURL = "http://127.0.0.1:" + itoa(ports[0])
	// Runs after etcd stopped: its WAL, snapshots and database hold no token.
	t.Cleanup(func() { testutil.CheckNoTokensInTree(t, filepath.Join(c.dir, "etcd"), nil) })
	start(t, tool(t, "etcd"), "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+itoa(ports[1]), "--initial-advertise-peer-urls", "http://127.0.0.1:"+itoa(ports[1]),
		"--initial-cluster", "default=http://127.0.0.1:"+itoa(ports[1]), "--log-level", "warn")

	c.writeFrontProxyPKI()
	c.saKey = filepath.Join(c.dir, "sa.key")
	writeECKey(t, c.saKey)
	c.tokenFile = filepath.Join(c.dir, "tokens.csv")
	os.WriteFile(c.tokenFile, []byte(strings.Join([]string{
		adminToken + `,admin,admin-uid,"system:masters"`,
		portcullisToken + ",portcullis,portcullis-uid",
		aliceToken + `,alice,alice-uid,"developers"`,
		bobToken + ",bob,bob-uid",
		sysAdminToken + `,system:admin,system-admin-uid,"system:masters"`,
		vncProxyToken + ",vnc-proxy,vnc-proxy-uid",
	}, "\n")+"\n"), 0o600)

	c.portcullis = initInstanceHosts(t, "127.0.0.1,localhost,portcullis.portcullis.svc")
	return c
}

// servePortcullis starts Portcullis cluster-connected to api, trusting the
// aggregation layer's front proxy.
func (c *cluster) servePortcullis(api *kubeAPIServer) {
	c.t.Helper()
	kubeconfig := c.kubeconfig(api, portcullisToken)
	if c.metricsPort == 0 {
		c.metricsPort = freePorts(c.t, 1)[0]
	}
	// The RBAC Portcullis needs comes first: its informers of the objects
	// tokens are bound to back off for seconds after a refusal, and reviews
	// of bound tokens wait for them.
	c.apply(api, portcullisRBAC)
	c.portcullis.serve(c.t, "--kubeconfig", kubeconfig, "--metrics-port", itoa(c.metricsPort),
		"--requestheader-client-ca-file", c.frontProxy.ca, "--requestheader-allowed-names", frontProxyName)
}

// portcullisRBAC is what Portcullis itself may do when cluster-connected.
const portcullisRBAC = `# Portcullis in cluster-connected mode: look VMs up, give each its
# <vm>-vnc-access ServiceAccount, Role and RoleBinding, watch them. It may
# only grant the Role's rule because it holds it itself (RBAC escalation).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: portcullis:vnc}
rules:
- apiGroups: [kubevirt.io]
  resources: [virtualmachines]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [pods, secrets, nodes]
  verbs: [get, list, watch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, create]
- apiGroups: [subresources.kubevirt.io]
  resources: [virtualmachineinstances/vnc]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:vnc}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis:vnc}
subjects: [{kind: User, name: portcullis}]
---
# Portcullis as a delegating server: TokenReview and SubjectAccessReview.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: User, name: portcullis}]
`

// startKubeAPIServer starts a kube-apiserver using webhookKubeconfig as its
// token webhook in the given version, with a 1s webhook cache.
func (c *cluster) startKubeAPIServer(webhookKubeconfig, version string) *kubeAPIServer {
	c.t.Helper()
	return c.startKubeAPIServerCacheTTL(webhookKubeconfig, version, "1s")
}

// startKubeAPIServerCacheTTL is startKubeAPIServer with the given
// --authentication-token-webhook-cache-ttl ("" for kube-apiserver's default).
func (c *cluster) startKubeAPIServerCacheTTL(webhookKubeconfig, version, cacheTTL string) *kubeAPIServer {
	c.t.Helper()
	port := freePorts(c.t, 1)[0]
	certDir := filepath.Join(c.dir, "apiserver-"+itoa(port))
	api := &kubeAPIServer{port: port, ca: filepath.Join(certDir, "apiserver.crt")}
	args := []string{
		"--etcd-servers", c.etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", itoa(port),
		"--endpoint-reconciler-type", "none", "--cert-dir", certDir,
		"--service-account-issuer", apiAudience,
		"--service-account-key-file", c.saKey, "--service-account-signing-key-file", c.saKey,
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--authorization-mode", "RBAC", "--token-auth-file", c.tokenFile,
		"--authentication-token-webhook-config-file", webhookKubeconfig,
		"--authentication-token-webhook-version", version,
		"--requestheader-client-ca-file", c.frontProxy.ca,
		"--requestheader-allowed-names", frontProxyName,
		"--requestheader-username-headers", "X-Remote-User",
		"--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-",
		"--proxy-client-cert-file", c.frontProxy.cert, "--proxy-client-key-file", c.frontProxy.key,
	}
	if cacheTTL != "" {
		args = append(args, "--authentication-token-webhook-cache-ttl", cacheTTL)
	}
	api.proc = start(c.t, tool(c.t, "kube-apiserver"), args...)
	c.waitKubeReady(api)
	return api
}

func (c *cluster) waitKubeReady(api *kubeAPIServer) {
	c.t.Helper()
	for range 600 {
		if _, err := os.Stat(api.ca); err == nil {
			out, err := c.kubectlQuiet(api, adminToken, "get", "--raw", "/readyz")
			if err == nil && strings.TrimSpace(out) == "ok" {
				return
			}
		}
		select {
		case <-api.proc.done:
			c.t.Fatalf("kube-apiserver exited: %v\n%s", api.proc.err, tail(api.proc.logs.String(), 3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	c.t.Fatalf("kube-apiserver never became ready:\n%s", tail(api.proc.logs.String(), 3000))
}

// kubeconfig writes a kubeconfig for api with a bearer token.
func (c *cluster) kubeconfig(api *kubeAPIServer, token string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, "kubeconfig-"+itoa(api.port)+"-"+strings.TrimSuffix(token, "-token"))
	content := `apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {server: "https://127.0.0.1:` + itoa(api.port) + `", certificate-authority: "` + api.ca + `"}
users:
- name: u
  user: {token: "` + token + `"}
contexts:
- name: k
  context: {cluster: k, user: u}
current-context: k
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// kubectl runs kubectl against api as the holder of token.
func (c *cluster) kubectl(api *kubeAPIServer, token string, args ...string) (string, error) {
	c.t.Helper()
	return run(c.t, tool(c.t, "kubectl"), append([]string{"--server", "https://127.0.0.1:" + itoa(api.port), "--certificate-authority", api.ca, "--token", token}, args...)...)
}

// kubectlQuiet is kubectl without logging stderr (for polling).
func (c *cluster) kubectlQuiet(api *kubeAPIServer, token string, args ...string) (string, error) {
	out, err := runQuiet(tool(c.t, "kubectl"), append([]string{"--server", "https://127.0.0.1:" + itoa(api.port), "--certificate-authority", api.ca, "--token", token, "--request-timeout", "10s"}, args...)...)
	return out, err
}

// apply creates objects from YAML as the admin.
func (c *cluster) apply(api *kubeAPIServer, yaml string) {
	c.t.Helper()
	path := filepath.Join(c.dir, "objects-"+itoa(int(time.Now().UnixNano()))+".yaml")
	os.WriteFile(path, []byte(yaml), 0o600)
	if _, err := c.kubectl(api, adminToken, "apply", "-f", path); err != nil {
		c.t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
