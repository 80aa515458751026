package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"

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
