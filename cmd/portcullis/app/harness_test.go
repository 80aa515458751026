package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn/authntest"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
)

// harness is a real Portcullis (init + serve) on loopback ports, with its
// logs captured at debug level.
type harness struct {
	t      *testing.T
	dir    string
	cfg    *config.Config
	srv    *Server
	logs   *testutil.Buffer
	cancel context.CancelFunc
	done   chan error
	// wrapStore, when set, is put around the server's store (fault injection).
	wrapStore func(store.Store) store.Store
	// clock is the server's clock (nil: the real one).
	clock clock.PassiveClock

	mu     sync.Mutex
	tokens []string // every token value handed out, to check none leaked
	// base is the server a replica was started from, peers its replicas:
	// the base's leak check covers them all.
	base  *harness
	peers []*harness
}

func freePorts(t *testing.T, n int) []int { return testutil.FreePorts(t, n) }

// initDir runs `portcullis init` into a new directory with free ports.
func initDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "portcullis")
	ports := freePorts(t, 2)
	o := NewInitOptions()
	o.Dir, o.Hosts, o.WebhookPort, o.SecurePort = dir, []string{"127.0.0.1", "localhost"}, ports[0], ports[1]
	if err := RunInit(o, io.Discard, clock.RealClock{}, rand.Reader); err != nil {
		t.Fatal(err)
	}
	authntest.SeedKeyDir(t, filepath.Join(dir, "keys"))
	return dir
}

func startServer(t *testing.T, mutate func(*config.Config)) *harness {
	t.Helper()
	return startServerWithClock(t, clock.RealClock{}, mutate)
}

// startServerWithClock starts a server on clk, which the test may move.
func startServerWithClock(t *testing.T, clk clock.PassiveClock, mutate func(*config.Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: initDir(t), logs: &testutil.Buffer{}, done: make(chan error, 1), clock: clk}
	cfg, err := config.Load(filepath.Join(h.dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BindAddress = "127.0.0.1"
	cfg.KeysDir = filepath.Join(h.dir, "keys") // imported: the test knows the signing key
	cfg.Log.Level = "debug"
	cfg.AuditLogPath = filepath.Join(h.dir, "audit.log")
	cfg.MetricsPort = 0 // ephemeral: servers of parallel tests must not share a port
	if mutate != nil {
		mutate(cfg)
	}
	h.cfg = cfg
	h.start()
	t.Cleanup(h.stopAndCheckLeaks)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, testutil.Output(h.t)), &slog.HandlerOptions{Level: slog.LevelDebug}))
	klog.SetSlogLogger(log)
	clk := h.clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	srv, err := newServer(h.cfg, log, clk, rand.Reader, h.wrapStore)
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- srv.Run(ctx) }()
	h.waitReady()
}

// waitReady polls /readyz on the issuer until it answers ok. Polling is
// bounded by count, not asserted on time.
func (h *harness) waitReady() {
	h.t.Helper()
	client := h.adminHTTP()
	for range 200 {
		resp, err := client.Get("https://" + h.srv.IssuerAddr().String() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	h.t.Fatal("issuer never became ready")
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("serve returned %v", err)
	}
	h.cancel = nil
}

// stopAndCheckLeaks stops the server, then checks that no token value is
// in the logs (its own, klog's, and its replicas'), the audit logs or the
// store files: neither one the test handed out nor any other.
func (h *harness) stopAndCheckLeaks() {
	h.stop()
	h.mu.Lock()
	known := slices.Clone(h.tokens)
	h.mu.Unlock()
	for i, s := range append([]*harness{h}, h.peers...) {
		testutil.CheckNoTokens(h.t, fmt.Sprintf("the logs of server %d", i), []byte(s.logs.String()), known)
	}
	// The init directory holds the bbolt store and every audit log.
	testutil.CheckNoTokensInTree(h.t, h.dir, known)
}

// remember notes a token value handed out, for the leak check.
func (h *harness) remember(tok string) string {
	if h.base != nil {
		return h.base.remember(tok)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens = append(h.tokens, tok)
	return tok
}

// restConfig loads one of init's kubeconfigs, as kubectl would.
func (h *harness) restConfig(kubeconfig string) *rest.Config {
	h.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(h.dir, kubeconfig))
	if err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

func (h *harness) adminClient() kubernetes.Interface {
	h.t.Helper()
	c, err := kubernetes.NewForConfig(h.restConfig(AdminKubeconfig))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// mint asks the issuer for a token of ns/name through TokenRequest.
func (h *harness) mint(ns, name string, seconds int64, auds ...string) *authenticationv1.TokenRequest {
	h.t.Helper()
	tr, err := h.adminClient().CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: auds, ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("mint %s/%s: %v", ns, name, err)
	}
	h.remember(tr.Status.Token)
	return tr
}

func (h *harness) caPool() *x509.CertPool {
	pem, err := os.ReadFile(filepath.Join(h.dir, caBase+".crt"))
	if err != nil {
		h.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// httpClient is an HTTPS client trusting init's CA, presenting the given
// certificate (base name in the init directory; "" for none).
func (h *harness) httpClient(certBase string) *http.Client {
	h.t.Helper()
	tlsCfg := &tls.Config{RootCAs: h.caPool(), MinVersion: tls.VersionTLS12}
	if certBase != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(h.dir, certBase+".crt"), filepath.Join(h.dir, certBase+".key"))
		if err != nil {
			h.t.Fatal(err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 30 * time.Second}
}

func (h *harness) adminHTTP() *http.Client { return h.httpClient(adminBase) }

func (h *harness) webhookURL() string {
	return "https://" + h.srv.WebhookAddr().String() + "/authenticate"
}

func (h *harness) issuerURL(path string) string {
	return "https://" + h.srv.IssuerAddr().String() + path
}

// writeCert issues a client certificate from init's issuer-user CA into the
// init directory, for a user other than the admin.
func (h *harness) writeCert(base, cn string, groups ...string) {
	h.t.Helper()
	h.writeCertFrom(clientCABase, base, cn, groups...)
}

// writeCertFrom issues a client certificate signed by the CA caBase.
func (h *harness) writeCertFrom(caBase, base, cn string, groups ...string) {
	h.t.Helper()
	ca := h.loadCAFrom(caBase)
	c, err := issueCert(certSpec{commonName: cn, organization: groups, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validFor: time.Hour}, ca, rand.Reader, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	if err := c.write(filepath.Join(h.dir, base)); err != nil {
		h.t.Fatal(err)
	}
}

// loadCA loads init's serving CA.
func (h *harness) loadCA() *certKey {
	h.t.Helper()
	return h.loadCAFrom(caBase)
}

func (h *harness) loadCAFrom(caBase string) *certKey {
	h.t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(h.dir, caBase+".crt"), filepath.Join(h.dir, caBase+".key"))
	if err != nil {
		h.t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return &certKey{cert: cert, key: pairECDSA(h.t, pair)}
}

type ecdsaKey = ecdsa.PrivateKey

func pairECDSA(t *testing.T, pair tls.Certificate) *ecdsaKey {
	t.Helper()
	k, ok := pair.PrivateKey.(*ecdsaKey)
	if !ok {
		t.Fatalf("CA key is %T, want ECDSA", pair.PrivateKey)
	}
	return k
}
