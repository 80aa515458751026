package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
)

// TestBenchHA prints the HA part of `make bench`: how long a revocation
// made through replica A takes to be refused by replica B (1000 times, on
// a real etcd), and cached review rates on etcd against bbolt.
func TestBenchHA(t *testing.T) {
	if os.Getenv("PORTCULLIS_BENCH_TABLE") == "" {
		t.Skip("prints the HA benchmark table; run `make bench`")
	}
	const revocations = 1000
	endpoint := testutil.StartEtcd(t)
	a := newEnvWith(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/bench/"}
	})
	b := a.replica(t)
	tokens, _ := a.mint(t, revocations)
	hook := b.client(t, "kube-apiserver-client")
	bURL := "https://" + b.srv.WebhookAddr().String() + "/authenticate"
	admin := a.client(t, "admin")
	revURL := "https://" + a.srv.IssuerAddr().String() + "/apis/portcullis.dev/v1alpha1/revocations"
	var delays []time.Duration
	for _, tok := range tokens {
		if review(hook, bURL, reviewBody(tok)) != nil {
			t.Fatal("B refuses a fresh token")
		}
		start := time.Now()
		resp, err := admin.Post(revURL, "application/json", strings.NewReader(`{"apiVersion":"portcullis.dev/v1alpha1","kind":"Revocation","metadata":{"generateName":"bench-"},"spec":{"jti":"`+jtiOf(tok)+`"}}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			var body []byte
			if resp != nil {
				body, _ = io.ReadAll(resp.Body)
			}
			t.Fatalf("revoke: %v %s", err, body)
		}
		resp.Body.Close()
		for i := 0; ; i++ {
			if review(hook, bURL, reviewBody(tok)) != nil {
				break
			}
			if i > 10000 {
				t.Fatal("B never refused a revoked token")
			}
		}
		delays = append(delays, time.Since(start))
	}

	offlineDelays := offlineProxyDelays(t, a, b, 200)
	retireDelays := retirementDelays(t, a, b, b.replica(t), 100)

	// Cached review rates: the same load on the etcd replica and on bbolt.
	etcdRate, etcdLat := cachedRate(t, a)
	bolt := newEnv(t)
	boltRate, boltLat := cachedRate(t, bolt)

	fmt.Printf("\nPortcullis HA benchmark (replicas A and B, and C for key retirements, on one etcd member; one run, one machine)\n\n")
	fmt.Printf("revocation through A refused by B, over %d revocations (revoke call included):\n", revocations)
	fmt.Printf("  p50 %v   p99 %v   max %v   (target p99 < 100ms)\n\n", percentile(delays, 0.5).Round(time.Microsecond), percentile(delays, 0.99).Round(time.Microsecond), percentile(delays, 1).Round(time.Microsecond))
	fmt.Printf("VM revoked through A refused by an offline VNC proxy watching B, over %d revocations (DELETE call included):\n", len(offlineDelays))
	fmt.Printf("  p50 %v   p99 %v   max %v   (target: within 1s)\n\n", percentile(offlineDelays, 0.5).Round(time.Microsecond), percentile(offlineDelays, 0.99).Round(time.Microsecond), percentile(offlineDelays, 1).Round(time.Microsecond))
	fmt.Printf("signing key retired through C refused by A and B, over %d retirements (PATCH call included):\n", len(retireDelays))
	fmt.Printf("  p50 %v   p99 %v   max %v   (target p99 < 100ms)\n\n", percentile(retireDelays, 0.5).Round(time.Microsecond), percentile(retireDelays, 0.99).Round(time.Microsecond), percentile(retireDelays, 1).Round(time.Microsecond))
	fmt.Printf("%-48s %12s %10s %10s\n", "cached reviews over HTTPS", "per second", "p50", "p99")
	fmt.Printf("%-48s %12.0f %10s %10s\n", "etcd store", etcdRate, percentile(etcdLat, 0.5).Round(time.Microsecond), percentile(etcdLat, 0.99).Round(time.Microsecond))
	fmt.Printf("%-48s %12.0f %10s %10s\n", "bbolt store", boltRate, percentile(boltLat, 0.5).Round(time.Microsecond), percentile(boltLat, 0.99).Round(time.Microsecond))
	fmt.Printf("\n%-60s %6.2f  (target <= 1.20)\n", "p50 latency etcd / bbolt, warm cache", float64(percentile(etcdLat, 0.5))/float64(percentile(boltLat, 0.5)))
}

// cachedRate reviews a few tokens many times on e (after one warm pass).
func cachedRate(t *testing.T, e *env) (float64, []time.Duration) {
	t.Helper()
	tokens, _ := e.mint(t, 200)
	hook := e.client(t, "kube-apiserver-client")
	url := "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	for _, tok := range tokens {
		if err := review(hook, url, reviewBody(tok)); err != nil {
			t.Fatal(err)
		}
	}
	return runLoad(20000, concurrency, func(i int) error { return review(hook, url, reviewBody(tokens[i%len(tokens)])) })
}

// newEnvWith is newEnv with a change to the config.
func newEnvWith(tb testing.TB, mutate func(*config.Config)) *env {
	tb.Helper()
	e := newEnv(tb)
	e.stop()
	mutate(e.cfg)
	e.start(tb)
	return e
}

// replica starts another server on e's directory with its own ports.
func (e *env) replica(tb testing.TB) *env {
	tb.Helper()
	cfg := *e.cfg
	ports := testutil.FreePorts(tb, 2)
	cfg.WebhookPort, cfg.SecurePort = ports[0], ports[1]
	r := &env{dir: e.dir, cfg: &cfg}
	r.start(tb)
	tb.Cleanup(r.stop)
	return r
}

// retirementDelays rotates a new key in through a (at once), mints a token
// with it, has a and b review it (cached there), then retires the key
// through c and times until both a and b refuse the token: n times.
func retirementDelays(t *testing.T, a, b, c *env, n int) []time.Duration {
	t.Helper()
	keysURL := func(e *env, name string) string {
		return "https://" + e.srv.IssuerAddr().String() + "/apis/portcullis.dev/v1alpha1/signingkeys" + name
	}
	adminA, adminC := a.client(t, "admin"), c.client(t, "admin")
	hooks := []struct {
		c   *http.Client
		url string
	}{{a.client(t, "kube-apiserver-client"), "https://" + a.srv.WebhookAddr().String() + "/authenticate"},
		{b.client(t, "kube-apiserver-client"), "https://" + b.srv.WebhookAddr().String() + "/authenticate"}}
	var delays []time.Duration
	for range n {
		var key struct{ Metadata struct{ Name string } }
		created := call(t, adminA, http.MethodPost, keysURL(a, ""), `{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`, http.StatusCreated)
		if err := json.Unmarshal(created, &key); err != nil {
			t.Fatal(err)
		}
		var tok string
		for i := 0; ; i++ {
			tokens, _ := a.mint(t, 1)
			if kidOf(tokens[0]) == key.Metadata.Name {
				tok = tokens[0]
				break
			}
			if i > 1000 {
				t.Fatal("A never signed with the key it rotated in")
			}
		}
		for _, h := range hooks {
			for i := 0; review(h.c, h.url, reviewBody(tok)) != nil; i++ {
				if i > 10000 {
					t.Fatal("a replica never accepted the new key's token")
				}
			}
		}
		start := time.Now()
		call(t, adminC, http.MethodPatch, keysURL(c, "/"+key.Metadata.Name), `{"spec":{"retired":true}}`, http.StatusOK)
		for _, h := range hooks {
			for i := 0; review(h.c, h.url, reviewBody(tok)) == nil; i++ {
				if i > 10000 {
					t.Fatal("a replica never refused a retired key's token")
				}
			}
		}
		delays = append(delays, time.Since(start))
	}
	return delays
}

// offlineProxyDelays mints a VNC token for each of n VMs through replica a,
// then revokes each VM through a and times until an offline proxy
// (authn/vncproxy, JWKS plus the revocations watch) attached to replica b
// refuses its token.
func offlineProxyDelays(t *testing.T, a, b *env, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	atB := &rest.Config{Host: "https://" + b.srv.IssuerAddr().String(), TLSClientConfig: rest.TLSClientConfig{
		CAFile: filepath.Join(a.dir, "ca.crt"), CertFile: filepath.Join(a.dir, "admin.crt"), KeyFile: filepath.Join(a.dir, "admin.key")}}
	offline, err := vncproxy.NewOffline(ctx, vncproxy.OfflineConfig{Issuer: atB, Iss: a.cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	admin := a.client(t, "admin")
	vncURL := func(vm string) string {
		return "https://" + a.srv.IssuerAddr().String() + "/apis/token.kubevirt.io/v1/namespaces/bench/virtualmachines/" + vm + "/vnc"
	}
	var delays []time.Duration
	for i := range n {
		vm := fmt.Sprintf("vm-%d", i)
		resp, err := admin.Get(vncURL(vm) + "?duration=1h")
		if err != nil {
			t.Fatal(err)
		}
		var answer struct{ Token string }
		json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		for j := 0; offline.Check(ctx, answer.Token, "bench", vm) != nil; j++ {
			if j > 20000 {
				t.Fatal("the offline proxy never accepted a fresh token")
			}
			time.Sleep(time.Millisecond)
		}
		req, _ := http.NewRequest(http.MethodDelete, vncURL(vm), nil)
		start := time.Now()
		resp, err = admin.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revoke %s: %v %v", vm, resp, err)
		}
		resp.Body.Close()
		for j := 0; !errors.Is(offline.Check(ctx, answer.Token, "bench", vm), vncproxy.ErrNotAuthenticated); j++ {
			if j > 100000 {
				t.Fatal("the offline proxy on B never refused a VM revoked through A")
			}
			time.Sleep(100 * time.Microsecond)
		}
		delays = append(delays, time.Since(start))
	}
	return delays
}
