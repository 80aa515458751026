package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/store"
)

// TestServeOnEtcd runs serve on a real etcd server instead of bbolt: mint,
// review, revoke, and a user token's disable, then a restart that keeps all
// of it.
func TestServeOnEtcd(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	h := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/portcullis-test/"}
	})
	ctx := context.Background()
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	apiCtx := authenticator.WithAudiences(ctx, authenticator.Audiences(h.cfg.APIAudiences))
	good := h.mint("ns", "good", 3600).Status.Token
	revoked := h.mint("ns", "revoked", 3600).Status.Token
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, revoked)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	h.writeCert("alice", "alice")
	name, userToken := h.createToken("alice", nil)
	if _, err := h.tokensAs("alice").Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if _, ok, err := wh.AuthenticateToken(apiCtx, good); !ok || err != nil {
			t.Fatalf("%s: the good token: %v %v", when, ok, err)
		}
		for what, tok := range map[string]string{"revoked": revoked, "disabled": userToken} {
			if _, ok, err := wh.AuthenticateToken(apiCtx, tok); ok || err != nil {
				t.Fatalf("%s: the %s token: %v %v", when, what, ok, err)
			}
		}
	}
	check("running")
	h.stop()
	h.start()
	check("after a restart on the same etcd")
}

// replica starts another Portcullis on base's directory (and so its key
// ring and certificates) with its own ports.
func (h *harness) replica() *harness {
	h.t.Helper()
	return h.replicaWith(nil)
}

// replicaWith starts a replica whose store is wrapped by wrapStore.
func (h *harness) replicaWith(wrapStore func(store.Store) store.Store) *harness {
	h.t.Helper()
	cfg := *h.cfg
	ports := freePorts(h.t, 2)
	cfg.WebhookPort, cfg.SecurePort = ports[0], ports[1]
	cfg.AuditLogPath = filepath.Join(h.dir, fmt.Sprintf("audit-%d.log", cfg.WebhookPort))
	r := &harness{t: h.t, dir: h.dir, cfg: &cfg, logs: &testutil.Buffer{}, wrapStore: wrapStore, base: h}
	h.peers = append(h.peers, r)
	r.start()
	h.t.Cleanup(r.stop)
	return r
}

// reviewAt posts a review of token to the replica's webhook.
func (h *harness) reviewAt(token string) bool {
	h.t.Helper()
	code, body := post(h.t, h.httpClient(webhookClientBase), h.webhookURL(),
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`)
	if code != http.StatusOK {
		h.t.Fatalf("review at %s: %d %s", h.webhookURL(), code, body)
	}
	return strings.Contains(body, `"authenticated":true`)
}

// TestReplicasShareRevocations runs three replicas on one 3-member etcd
// cluster: a token revoked, or a user token disabled, through A is refused
// by B and C.
func TestReplicasShareRevocations(t *testing.T) {
	cluster := testutil.NewEtcdCluster(t, 3)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: cluster.URLs(), Prefix: "/replicas/"}
	})
	b, c := a.replica(), a.replica()
	ctx := context.Background()
	tok := a.mint("ns", "sa", 3600).Status.Token
	a.writeCert("alice", "alice")
	name, userToken := a.createToken("alice", nil)
	for _, r := range []*harness{a, b, c} {
		if !r.reviewAt(tok) || !r.reviewAt(userToken) {
			t.Fatalf("replica %s refuses fresh tokens", r.webhookURL())
		}
	}
	// Both are cached everywhere now; the changes must still win.
	start := time.Now()
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(a.dir, AdminKubeconfig)}, JTI: jtiOf(t, tok)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := a.tokensAs("alice").Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if a.reviewAt(tok) || a.reviewAt(userToken) {
		t.Fatal("replica A, which took the changes, still accepts the tokens")
	}
	for _, r := range []*harness{b, c} {
		refused := false
		for range 200 {
			if !r.reviewAt(tok) && !r.reviewAt(userToken) {
				refused = true
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !refused {
			t.Fatalf("replica %s still accepts a token revoked (or disabled) through A; its log:\n%s", r.webhookURL(), tail(r.logs.String(), 3000))
		}
	}
	t.Logf("B and C refused the revoked and the disabled token %v after A took the changes", time.Since(start).Round(time.Millisecond))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestEtcdOutageFailsClosedAndRecovers stops etcd under a replica: within
// the staleness bound cached tokens still pass; past it every review is a
// 503 (never a wrong "authenticated") and /readyz is false; once etcd is
// back the replica recovers by itself.
func TestEtcdOutageFailsClosedAndRecovers(t *testing.T) {
	etcd := testutil.NewEtcd(t)
	h := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{etcd.URL}, Prefix: "/outage/"}
		c.Cache.Staleness = metav1.Duration{Duration: 2 * time.Second}
	})
	tok := h.mint("ns", "sa", 3600).Status.Token
	if !h.reviewAt(tok) {
		t.Fatal("fresh token refused")
	}
	review := func() int {
		code, body := post(t, h.httpClient(webhookClientBase), h.webhookURL(),
			`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`)
		if code == http.StatusOK && !strings.Contains(body, `"authenticated":true`) {
			t.Fatalf("a valid token was refused outright during the outage: %s", body)
		}
		return code
	}
	readyz := func() int {
		resp, err := h.httpClient("").Get(h.issuerURL("/readyz"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	etcd.Stop()
	stopped := time.Now()
	var closedAfter time.Duration
	for range 200 {
		if review() == http.StatusServiceUnavailable {
			closedAfter = time.Since(stopped)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if closedAfter == 0 {
		t.Fatal("reviews never failed closed with etcd down")
	}
	if code := readyz(); code != http.StatusInternalServerError && code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with etcd down: %d, want failure", code)
	}
	t.Logf("etcd down: reviews failed closed (503) %v later (staleness bound 2s)", closedAfter.Round(10*time.Millisecond))

	etcd.Start()
	restarted := time.Now()
	recovered := false
	for range 600 {
		if review() == http.StatusOK && readyz() == http.StatusOK {
			recovered = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !recovered {
		t.Fatal("the replica did not recover after etcd came back")
	}
	t.Logf("etcd back: the replica answered and was ready again %v later, without a restart", time.Since(restarted).Round(10*time.Millisecond))
}

// TestEtcdClusterFaults runs a replica on a 3-member etcd cluster under
// review load: one member down changes nothing; two down (no quorum) fail
// reviews closed after the staleness bound, never with a wrong yes; both
// back, the replica recovers by itself.
func TestEtcdClusterFaults(t *testing.T) {
	cluster := testutil.NewEtcdCluster(t, 3)
	h := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: cluster.URLs(), Prefix: "/faults/"}
		// Margins for a loaded machine: a silent watch is abandoned after
		// 2.5s and the client reconnects within 2s, well inside 5s.
		c.Cache.Staleness = metav1.Duration{Duration: 5 * time.Second}
	})
	ctx := context.Background()
	valid := []string{h.mint("ns", "a", 3600).Status.Token, h.mint("ns", "b", 3600).Status.Token}
	revoked := h.mint("ns", "c", 3600).Status.Token
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, revoked)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	revoked2 := h.mint("ns", "d", 3600).Status.Token // revoked while a member is down
	client := h.httpClient(webhookClientBase)
	// review answers 200-yes, 200-no or 503 (undecided).
	review := func(tok string) (int, bool) {
		code, body := post(t, client, h.webhookURL(), `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`)
		return code, strings.Contains(body, `"authenticated":true`)
	}
	var mu sync.Mutex
	counts := map[string]int{}
	phase := "all members up"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, yes := review(valid[i%len(valid)])
				_, revokedYes := review(revoked)
				mu.Lock()
				switch {
				case revokedYes:
					counts[phase+": revoked token accepted"]++
				case code == http.StatusOK && yes:
					counts[phase+": valid accepted"]++
				case code == http.StatusServiceUnavailable:
					counts[phase+": 503"]++
				default:
					counts[phase+": valid refused"]++
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	setPhase := func(p string, d time.Duration) {
		mu.Lock()
		phase = p
		mu.Unlock()
		time.Sleep(d)
	}
	defer func() { close(stop); wg.Wait() }()

	setPhase("all members up", time.Second)
	cluster.Members[0].Stop()
	setPhase("one member down", 2*time.Second)
	// Writes go on with one member down, and are kept.
	minted := h.mint("ns", "written-during-fault", 3600).Status.Token
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, revoked2)}, io.Discard); err != nil {
		t.Fatalf("revoking with one member down: %v", err)
	}
	setPhase("one member down", 2*time.Second)
	cluster.Members[1].Stop()
	// Past the bound (5s, plus 1s for a review in flight at its edge).
	setPhase("two members down, within the bound", 6*time.Second)
	// Longer than one store read without quorum can block (the bound), so
	// reviews complete in this phase; each must be a 503.
	setPhase("two members down", 8*time.Second)
	cluster.Members[0].StartAsync()
	cluster.Members[1].StartAsync()
	// etcd re-elects and the replica resyncs within about 1.5 s; the margin
	// is for a loaded 2-core machine.
	setPhase("members back", 10*time.Second)
	setPhase("recovered", 2*time.Second)

	// What was written with one member down survived the outage.
	if code, yes := review(minted); code != http.StatusOK || !yes {
		t.Fatalf("a token minted with one member down: %d %v after recovery", code, yes)
	}
	if code, yes := review(revoked2); code != http.StatusOK || yes {
		t.Fatalf("a token revoked with one member down: %d %v after recovery", code, yes)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("review outcomes by phase: %v", counts)
	for p, n := range counts {
		if strings.HasSuffix(p, "revoked token accepted") && n > 0 {
			t.Fatalf("%s: %d", p, n)
		}
		if strings.HasSuffix(p, "valid refused") && n > 0 {
			t.Fatalf("%s: %d (a valid token must never be a clean no)", p, n)
		}
	}
	for _, p := range []string{"all members up", "one member down", "recovered"} {
		if counts[p+": 503"] > 0 || counts[p+": valid accepted"] == 0 {
			t.Fatalf("%s: %d accepted, %d undecided; want every valid review accepted", p, counts[p+": valid accepted"], counts[p+": 503"])
		}
	}
	if counts["two members down: 503"] == 0 || counts["two members down: valid accepted"] > 0 {
		t.Fatalf("two members down past the bound: %d undecided, %d accepted; want fail closed", counts["two members down: 503"], counts["two members down: valid accepted"])
	}
}

// TestReplicaRestartUnderLoad restarts replica A while B serves reviews:
// B is unaffected, and A rejoins and sees revocations made through B while
// it was down.
func TestReplicaRestartUnderLoad(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/restart/"}
	})
	b := a.replica()
	tok := a.mint("ns", "sa", 3600).Status.Token
	revokedWhileDown := a.mint("ns", "gone", 3600).Status.Token
	if !a.reviewAt(revokedWhileDown) {
		t.Fatal("fresh token refused") // cached on A now
	}
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !b.reviewAt(tok) {
				failures.Add(1)
			}
		}
	})
	a.stop()
	// Revoke through B while A is down.
	rev := &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: b.adminKubeconfigFor()}, JTI: jtiOf(t, revokedWhileDown)}
	if err := RunRevoke(context.Background(), rev, io.Discard); err != nil {
		t.Fatal(err)
	}
	a.start()
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("B failed %d reviews while A restarted", failures.Load())
	}
	if !a.reviewAt(tok) {
		t.Fatal("A does not accept a valid token after its restart")
	}
	if a.reviewAt(revokedWhileDown) {
		t.Fatal("A accepts a token revoked through B while A was down")
	}
}

// adminKubeconfigFor writes an admin kubeconfig pointing at this replica's issuer.
func (h *harness) adminKubeconfigFor() string {
	h.t.Helper()
	kc, err := clientcmd.LoadFromFile(filepath.Join(h.dir, AdminKubeconfig))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = h.issuerURL("")
	}
	path := filepath.Join(h.t.TempDir(), "admin.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// TestOfflineProxyLearnsRevocationsMadeOnAnotherReplica: an offline VNC
// proxy watches replica B's revocations; a VM revoked through replica A
// must reach it (B learns it from the store's watch and must pass it on).
func TestOfflineProxyLearnsRevocationsMadeOnAnotherReplica(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/offline/"}
	})
	b := a.replica()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	atB := a.restConfig(AdminKubeconfig)
	atB.Host = b.issuerURL("")
	offline, err := vncproxy.NewOffline(ctx, vncproxy.OfflineConfig{Issuer: atB, Iss: a.cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	_, vm1, _ := a.vncGet(adminBase, "vm1", "?duration=1h")
	_, vm2, _ := a.vncGet(adminBase, "vm2", "?duration=1h")
	poll := func(what string, want error) time.Duration {
		t.Helper()
		start := time.Now()
		var err error
		for range 200 {
			if err = offline.Check(ctx, vm1, "vms", "vm1"); errors.Is(err, want) || (want == nil && err == nil) {
				return time.Since(start)
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("%s: %v, want %v", what, err, want)
		return 0
	}
	poll("synced and good at B", nil)
	if err := RunVNC(ctx, &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(a.dir, AdminKubeconfig)}}, []string{"revoke", "vms/vm1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	took := poll("VM revoked through A, proxy on B", vncproxy.ErrNotAuthenticated)
	t.Logf("the proxy on B refused the VM revoked through A %v after the revocation returned", took.Round(time.Millisecond))
	if err := offline.Check(ctx, vm2, "vms", "vm2"); err != nil {
		t.Fatalf("another VM's token: %v", err)
	}
}
