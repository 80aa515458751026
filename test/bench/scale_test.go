package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"

	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
	"portcullis.dev/portcullis/store/etcd"
)

// TestBenchScale prints how each operation's cost grows with the store:
// for each size in PORTCULLIS_BENCH_SCALE (records, comma-separated, e.g.
// "10000,1000000"), it fills a bbolt store through the store package, starts
// a server on it and measures what the scale issue names. The ratios to the
// first row are the figures that matter.
func TestBenchScale(t *testing.T) {
	if os.Getenv("PORTCULLIS_BENCH_SCALE") == "" {
		t.Skip("prints the scale table; run `make bench-scale`")
	}
	perReview := cacheEntryBytes(t, 100_000)
	fmt.Printf("\nheap per cached review (a verified-signature and a record entry, 100k of each): %.0f bytes, %.0f per entry (goal <= 400 per entry)\n",
		perReview, perReview/2)
	// bbolt first: the etcd member runs in this process, and at 1M records
	// its in-memory key index is gigabytes of heap whose GC every later
	// row would pay for.
	printScale("bbolt", measureSizes(t, "PORTCULLIS_BENCH_SCALE", nil))
	if os.Getenv("PORTCULLIS_BENCH_SCALE_ETCD") != "" {
		endpoint := testutil.StartEtcd(t)
		printScale("etcd, one embedded member", measureSizes(t, "PORTCULLIS_BENCH_SCALE_ETCD", func(c *config.Config) {
			c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: fmt.Sprintf("/scale-%d/", time.Now().UnixNano())}
		}))
	}
}

// measureSizes measures a row for each size listed in the variable env.
func measureSizes(t *testing.T, env string, storeConfig func(*config.Config)) []scaleRow {
	t.Helper()
	var rows []scaleRow
	for _, f := range strings.Split(os.Getenv(env), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, measureScale(t, n, storeConfig))
	}
	return rows
}

func printScale(backend string, rows []scaleRow) {
	fmt.Printf("\nPortcullis scale benchmark (%s; one run, one machine; ratios to the first row)\n\n", backend)
	fmt.Printf("%12s %10s %10s %12s %12s %12s %12s %10s %8s\n", "records", "fill", "ready", "reviews/s", "cached/s", "create p50", "list p50", "prune p50", "RSS MB")
	for _, r := range rows {
		fmt.Printf("%12d %10s %10s %12.0f %12.0f %12s %12s %10s %8d\n", r.records, r.fill.Round(time.Second), r.ready.Round(time.Millisecond),
			r.uncached, r.cached, r.create.Round(time.Microsecond), r.list.Round(time.Microsecond), r.prune.Round(time.Microsecond), r.rss>>20)
	}
	first := rows[0]
	for _, r := range rows[1:] {
		fmt.Printf("\n%d vs %d records (target: each within 1.20; rates as first/this):\n", r.records, first.records)
		fmt.Printf("  ready %.2f   reviews %.2f   cached %.2f   create %.2f   list %.2f   prune %.2f\n",
			ratio(r.ready, first.ready), first.uncached/r.uncached, first.cached/r.cached,
			ratio(r.create, first.create), ratio(r.list, first.list), ratio(r.prune, first.prune))
	}
}

type scaleRow struct {
	records                          int
	fill, ready, create, list, prune time.Duration
	uncached, cached                 float64
	rss                              int64
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// measureScale fills a store (bbolt, or what storeConfig sets) with n
// records and measures a server on it.
func measureScale(t *testing.T, n int, storeConfig func(*config.Config)) scaleRow {
	t.Helper()
	e := newEnv(t)
	e.stop()
	if storeConfig != nil {
		storeConfig(e.cfg)
	}
	row := scaleRow{records: n}
	start := time.Now()
	fillStore(t, e.cfg.Store, n)
	row.fill = time.Since(start)

	start = time.Now()
	e.start(t)
	row.ready = time.Since(start)

	// Prune: keys rotated out that signed nothing, among n records.
	keysURL := "https://" + e.srv.IssuerAddr().String() + "/apis/portcullis.dev/v1alpha1/signingkeys"
	admin := e.client(t, "admin")
	var prunes []time.Duration
	for range 10 {
		old := firstKey(t, admin, keysURL)
		call(t, admin, http.MethodPost, keysURL, `{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`, http.StatusCreated)
		start = time.Now()
		call(t, admin, http.MethodDelete, keysURL+"/"+old, "", http.StatusOK)
		prunes = append(prunes, time.Since(start))
	}
	row.prune = percentile(prunes, 0.5)

	// Reviews: first sight (each token once), then cached.
	tokens, _ := e.mint(t, 2000)
	hook := e.client(t, "kube-apiserver-client")
	url := "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	row.uncached, _ = runLoad(len(tokens), concurrency, func(i int) error { return review(hook, url, reviewBody(tokens[i])) })
	row.cached, _ = runLoad(20000, concurrency, func(i int) error { return review(hook, url, reviewBody(tokens[i%200])) })

	// A user with 10 tokens: create latency (the per-user limit reads the
	// user's own range), then list latency.
	tokensURL := "https://" + e.srv.IssuerAddr().String() + "/apis/ext.cattle.io/v1/tokens"
	body := `{"apiVersion":"ext.cattle.io/v1","kind":"Token","spec":{"description":"scale"}}`
	writeUserCert(t, e.dir, "scale-user", "scale-user")
	user := e.client(t, "scale-user")
	var creates, lists []time.Duration
	for range 10 {
		t0 := time.Now()
		call(t, user, http.MethodPost, tokensURL, body, http.StatusCreated)
		creates = append(creates, time.Since(t0))
	}
	for range 100 {
		t0 := time.Now()
		data := call(t, user, http.MethodGet, tokensURL, "", http.StatusOK)
		lists = append(lists, time.Since(t0))
		var l struct{ Items []json.RawMessage }
		if err := json.Unmarshal(data, &l); err != nil || len(l.Items) != 10 {
			t.Fatalf("the user lists %d tokens, want 10: %v", len(l.Items), err)
		}
	}
	row.create, row.list = percentile(creates, 0.5), percentile(lists, 0.5)
	row.rss = rss(t)
	e.stop()
	if e.cfg.Store.Type == config.StoreBolt {
		os.Remove(e.cfg.Store.Path)
		// Write back what is left of the file now: a 10M-record file's
		// writeback stalls every fsync on the disk, etcd's in the next rows.
		syscall.Sync()
	}
	return row
}

// fillStore writes n records through the store package: 90% ServiceAccount
// tokens over 10,000 subjects, 10% user tokens over 10,000 other users,
// signed by a key that is not in the ring.
func fillStore(t *testing.T, cfg config.Store, n int) {
	t.Helper()
	var s store.Store
	if cfg.Type == config.StoreEtcd {
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s = etcd.New(etcd.Config{Client: c, Prefix: cfg.Prefix})
	} else {
		b, err := bolt.Open(cfg.Path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s = b
	}
	defer s.Close()
	exp := time.Now().Add(24 * time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const writers = 512
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				r := &store.Record{
					JTI: fmt.Sprintf("fill-%09d", i), Kind: store.KindServiceAccount,
					Subject:   fmt.Sprintf("system:serviceaccount:fill:sa-%d", i%10000),
					Groups:    []string{"system:serviceaccounts", "system:serviceaccounts:fill"},
					Audiences: []string{"https://kubernetes.default.svc.cluster.local"},
					KeyID:     "fill-key", IssuedAt: time.Now(), ExpiresAt: exp,
				}
				if i%10 == 0 {
					r.Kind, r.Subject = store.KindUser, fmt.Sprintf("user-%d", i%10000)
					r.User = &store.UserToken{Name: fmt.Sprintf("token-fill%09d", i), UID: r.JTI, TTL: 24 * time.Hour, LastUpdated: r.IssuedAt}
				}
				if err := s.CreateRecord(context.Background(), r); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func firstKey(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	var l struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	if err := json.Unmarshal(call(t, c, http.MethodGet, url, "", http.StatusOK), &l); err != nil || len(l.Items) == 0 {
		t.Fatalf("signing keys: %v", err)
	}
	return l.Items[0].Metadata.Name
}

// call sends body (JSON; a merge patch for PATCH) and checks the status.
func call(t *testing.T, c *http.Client, method, url, body string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, data)
	}
	return data
}

// rss is this process's resident set size (the server runs in it).
func rss(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// writeUserCert writes <dir>/<base>.crt and .key: a client certificate for
// user cn from init's client CA, so the bench acts as a user, not the admin.
func writeUserCert(t *testing.T, dir, base, cn string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "client-ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cacheEntryBytes measures what one cached review costs in heap: a
// verified-signature entry and a record entry, as a review of a
// ServiceAccount token leaves them, over n entries of each.
func cacheEntryBytes(t *testing.T, n int) float64 {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	verified, err := cache.New[*authn.Verified](int64(n))
	if err != nil {
		t.Fatal(err)
	}
	defer verified.Close()
	records, err := cache.New[*store.Record](int64(n))
	if err != nil {
		t.Fatal(err)
	}
	defer records.Close()
	now := time.Now()
	for i := range n {
		jti := fmt.Sprintf("%022d", i) // 128 random bits, base64url: 22 characters
		subject := fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", i%1000, i)
		verified.Set(fmt.Sprintf("%043d", i), &authn.Verified{JTI: jti, Subject: subject, KeyID: strings.Repeat("k", 43),
			Issuer: "https://portcullis.portcullis.svc", Audiences: []string{"https://kubernetes.default.svc.cluster.local"},
			IssuedAt: now, NotBefore: now, Expiry: now.Add(time.Hour)}, time.Hour)
		records.Set(jti, &store.Record{JTI: jti, Kind: store.KindServiceAccount, Subject: subject, UID: fmt.Sprintf("%036d", i),
			Groups:    []string{"system:serviceaccounts", fmt.Sprintf("system:serviceaccounts:ns-%d", i%1000)},
			Extra:     map[string][]string{"authentication.kubernetes.io/credential-id": {"JTI=" + jti}},
			Audiences: []string{"https://kubernetes.default.svc.cluster.local"}, KeyID: strings.Repeat("k", 43),
			IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, time.Hour)
	}
	verified.Wait()
	records.Wait()
	held := 0
	for i := range n {
		if _, ok := verified.Get(fmt.Sprintf("%043d", i)); ok {
			held++
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(verified)
	runtime.KeepAlive(records)
	if held == 0 {
		t.Fatal("the cache kept nothing")
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(held)
}
