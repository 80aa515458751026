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
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"portcullis.dev/portcullis/issuer/tokens"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	perReview, held := cachedReviewBytes(t, 100_000)
	fmt.Printf("\nheap per cached review (its verified-signature entry and its record entry; %d reviews held): %.0f bytes, %.0f per entry (goal <= 400 per entry)\n",
		held, perReview, perReview/2)
	// bbolt first: the etcd member runs in this process, and at 1M records
	// its in-memory key index is gigabytes of heap whose GC every later
	// row would pay for.
	printScale("bbolt", measureSizes(t, "PORTCULLIS_BENCH_SCALE", nil))
	if os.Getenv("PORTCULLIS_BENCH_SCALE_ETCD") != "" {
		// An etcd binary (make e2e-tools builds one) runs as a process of its
		// own, as in production; without one the member is embedded here.
		endpoint, where := "", "etcd, one embedded member"
		if bin := os.Getenv("PORTCULLIS_BENCH_ETCD_BIN"); bin != "" {
			endpoint, where = startEtcdProcess(t, bin), "etcd, one member in its own process"
		} else {
			endpoint = testutil.StartEtcd(t)
		}
		printScale(where, measureSizes(t, "PORTCULLIS_BENCH_SCALE_ETCD", func(c *config.Config) {
			c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: fmt.Sprintf("/scale-%d/", time.Now().UnixNano())}
		}))
	}
}

// waitIdle waits, up to two minutes, until the machine's CPUs are at least
// 90% idle over two seconds.
func waitIdle(t *testing.T) {
	t.Helper()
	// The fill's dirty pages first: their writeback would stall the rows'
	// fsyncs (and counts as idle below, being I/O wait).
	syscall.Sync()
	idleAndTotal := func() (idle, total uint64) {
		data, err := os.ReadFile("/proc/stat")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:] // "cpu" user nice system idle iowait ...
		for i, v := range f {
			n, _ := strconv.ParseUint(v, 10, 64)
			total += n
			if i == 3 || i == 4 {
				idle += n
			}
		}
		return idle, total
	}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		i0, t0 := idleAndTotal()
		time.Sleep(2 * time.Second)
		i1, t1 := idleAndTotal()
		if t1 > t0 && float64(i1-i0)/float64(t1-t0) >= 0.9 {
			return
		}
	}
	fmt.Println("  (the machine did not go idle within two minutes after the fill)")
}

// startEtcdProcess runs the etcd binary bin on loopback ports until the test
// ends and returns its client URL once it answers.
func startEtcdProcess(t *testing.T, bin string) string {
	t.Helper()
	ports := testutil.FreePorts(t, 2)
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "--log-level", "error",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = c.Get(ctx, "health")
		cancel()
		if err == nil {
			return client
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd at %s never answered: %v", client, err)
	return ""
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
	for _, r := range rows {
		starts := make([]string, len(r.readies))
		for i, d := range r.readies {
			starts[i] = d.Round(100 * time.Microsecond).String()
		}
		fmt.Printf("%12d starts: %s\n", r.records, strings.Join(starts, ", "))
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
	readies                          []time.Duration // every start, in order
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
	// The default per-user limit: a user's create counts their tokens
	// (front door) and the store counts them again as it writes.
	e.cfg.UserTokens.MaxPerUser = tokens.DefaultMaxPerUser
	row := scaleRow{records: n}
	start := time.Now()
	fillStore(t, e.cfg.Store, n)
	row.fill = time.Since(start)
	// A bulk load leaves work behind (an etcd process snapshots and
	// collects garbage, the kernel writes back dirty pages): the rows
	// measure the steady state after it.
	waitIdle(t)

	// Ready: the median of five starts, the first right after the fill.
	// One start is 30-45 ms at any size, most of it disk (a new log segment
	// preallocated, the directory synced): three starts left the median to
	// that jitter.
	var readies []time.Duration
	for i := range 5 {
		if i > 0 {
			e.stop()
		}
		start = time.Now()
		e.start(t)
		readies = append(readies, time.Since(start))
	}
	row.ready, row.readies = percentile(readies, 0.5), readies

	// Prune: keys rotated out that signed nothing, among n records.
	keysURL := "https://" + e.srv.IssuerAddr().String() + "/apis/portcullis.dev/v1alpha1/signingkeys"
	admin := e.client(t, "admin")
	var prunes []time.Duration
	for range 30 {
		old := firstKey(t, admin, keysURL)
		call(t, admin, http.MethodPost, keysURL, `{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`, http.StatusCreated)
		start = time.Now()
		call(t, admin, http.MethodDelete, keysURL+"/"+old, "", http.StatusOK)
		prunes = append(prunes, time.Since(start))
	}
	row.prune = percentile(prunes, 0.5)

	// Reviews: first sight (each token once; 8,000 take about a second,
	// 2,000 left the rate to a scheduling hiccup), then cached.
	minted, _ := e.mint(t, 8000)
	hook := e.client(t, "kube-apiserver-client")
	url := "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	row.uncached, _ = runLoad(len(minted), concurrency, func(i int) error { return review(hook, url, reviewBody(minted[i])) })
	row.cached, _ = runLoad(20000, concurrency, func(i int) error { return review(hook, url, reviewBody(minted[i%200])) })

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
				if err := s.CreateRecord(context.Background(), r, store.CreateOptions{}); err != nil {
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
func rss(t *testing.T) int64 { return residentMemory(t).total }

// resident is a process's resident memory, split as the kernel counts it.
type resident struct {
	total int64
	// anon is memory the process allocated: the Go heap, stacks, the
	// runtime's own. It is what a leak grows.
	anon int64
	// file is mapped file pages: the binary's, and bbolt's data file, which
	// it reads through mmap. The kernel drops them under memory pressure;
	// the data file's grow with the data, not with time.
	file int64
}

func residentMemory(t *testing.T) resident {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var r resident
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			r.total = kb << 10
		case "RssAnon:":
			r.anon = kb << 10
		case "RssFile:":
			r.file = kb << 10
		}
	}
	return r
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
