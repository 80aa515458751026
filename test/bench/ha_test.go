package bench

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

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
			t.Fatalf("revoke: %v %v", resp, err)
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

	// Cached review rates: the same load on the etcd replica and on bbolt.
	etcdRate, etcdLat := cachedRate(t, a)
	bolt := newEnv(t)
	boltRate, boltLat := cachedRate(t, bolt)

	fmt.Printf("\nPortcullis HA benchmark (2 replicas on one etcd member; one run, one machine)\n\n")
	fmt.Printf("revocation through A refused by B, over %d revocations (revoke call included):\n", revocations)
	fmt.Printf("  p50 %v   p99 %v   max %v   (target p99 < 100ms)\n\n", percentile(delays, 0.5).Round(time.Microsecond), percentile(delays, 0.99).Round(time.Microsecond), percentile(delays, 1).Round(time.Microsecond))
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
