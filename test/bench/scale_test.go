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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"portcullis.dev/portcullis/cmd/portcullis/app"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
	"portcullis.dev/portcullis/store/etcd"
)

// TestBenchScale prints how each operation's cost grows with the store:
// for each size in PORTCULLIS_BENCH_SCALE (records, comma-separated, e.g.
// "10000,1000000"), it fills a bbolt store through the store package, then
// measures a server on each store in interleaved rounds. The ratios to the
// first row are the figures that matter.
func TestBenchScale(t *testing.T) {
	if os.Getenv("PORTCULLIS_BENCH_SCALE") == "" {
		t.Skip("prints the scale table; run `make bench-scale`")
	}
	perReview, held := cachedReviewBytes(t, 100_000)
	fmt.Printf("\nheap per cached review (its verified-signature entry and its record entry; %d reviews held): %.0f bytes, %.0f per entry (goal <= 400 per entry)\n",
		held, perReview, perReview/2)
	// The caches' budget: both hold cache.maxEntries entries, one of each a
	// review.
	budget := func(m cacheMemory) string {
		b := float64(m.entries) * perReview
		return fmt.Sprintf("cache budget %d reviews x %.0f bytes = %.0f MB; RssAnon %d MB against the bound of budget + 150 MB = %.0f MB",
			m.entries, perReview, b/1e6, m.mem.anon/1e6, b/1e6+150)
	}
	// bbolt first: its files are removed before the etcd members start.
	sizes, full := measureSizes(t, "PORTCULLIS_BENCH_SCALE", nil, perReview)
	printScale("bbolt", sizes, full, budget(full))
	if os.Getenv("PORTCULLIS_BENCH_SCALE_ETCD") != "" {
		// Each size gets a member of its own, so that the small row's etcd
		// holds only its own records. An etcd binary (make e2e-tools builds
		// one) runs as a process of its own, as in production; without one
		// the member is embedded here.
		bin := os.Getenv("PORTCULLIS_BENCH_ETCD_BIN")
		where := "etcd, one embedded member a size"
		if bin != "" {
			where = "etcd, one member a size, each in its own process"
		}
		sizes, full := measureSizes(t, "PORTCULLIS_BENCH_SCALE_ETCD", func(c *config.Config) {
			endpoint := ""
			if bin != "" {
				endpoint = startEtcdProcess(t, bin)
			} else {
				endpoint = testutil.StartEtcd(t)
			}
			c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/scale/"}
		}, perReview)
		printScale(where, sizes, full, budget(full))
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

// scaleRounds is how many times each size is measured. The sizes take
// turns, each round in another order, so that a slow minute of the machine
// falls on every size alike rather than on whichever row it ran in.
const scaleRounds = 5

// measureSizes fills a store for each size listed in the variable env
// (bbolt, or what storeConfig sets), then measures them in interleaved
// rounds. It returns the sizes and the memory of a server on the largest
// with both review caches full, and prints that server's memory in a
// memory cgroup limited to the bound of the caches' budget (perReview
// bytes a cached review) + 150 MB, where the machine lets it make one.
func measureSizes(t *testing.T, env string, storeConfig func(*config.Config), perReview float64) ([]*scaleSize, cacheMemory) {
	t.Helper()
	var sizes []*scaleSize
	for _, f := range strings.Split(os.Getenv(env), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fillSize(t, n, storeConfig))
	}
	// A bulk load leaves work behind (an etcd process snapshots and
	// collects garbage, the kernel writes back dirty pages): the rounds
	// measure the steady state after it.
	waitIdle(t)
	for round := range scaleRounds {
		for i := range sizes {
			sizes[(round+i)%len(sizes)].measureRound(t, round)
		}
	}
	// Memory at the largest size, with both review caches filled to their
	// configured size: first as a process of its own, then in a memory
	// cgroup limited to the bound, the caches' budget + 150 MB.
	largest := sizes[len(sizes)-1]
	full := largest.fullCacheMemory(t, nil)
	bound := int64(float64(full.entries)*perReview) + 150e6
	if group, why := newMemoryCgroup(t, bound); group == nil {
		fmt.Printf("\nno run in a memory cgroup: %s\n", why)
	} else {
		if largest.e.cfg.Store.Type == config.StoreBolt {
			dropCachedPages(t, largest.e.cfg.Store.Path)
		}
		contained := largest.fullCacheMemory(t, group)
		fmt.Printf("\nmemory of `portcullis serve` on the %d-record store in a memory cgroup limited to budget + 150 MB = %d MB, GOMEMLIMIT the same, its store file's pages dropped from the page cache first: %s\n",
			largest.records, bound/1e6, contained)
	}
	for _, s := range sizes {
		if s.e.cfg.Store.Type == config.StoreBolt {
			os.Remove(s.e.cfg.Store.Path)
		}
	}
	// Write back what is left of the files now: a 10M-record file's
	// writeback stalls every fsync on the disk, etcd's in the next rows.
	syscall.Sync()
	return sizes, full
}

// cacheMemory is a server process's memory once its review caches were
// filled to their configured number of entries.
type cacheMemory struct {
	entries    int64 // configured, each cache
	held       int   // reviews the verified-signature cache answered on a second pass
	mem        resident
	heapInUse  float64 // the Go heap's spans in use, from the server's metrics
	firstSight float64 // the median rate of the first-sight reviews that filled the caches
	// contained is what the memory cgroup the server ran in was charged,
	// when it ran in one.
	contained *cgroupMemory
}

func (m cacheMemory) String() string {
	s := fmt.Sprintf("RSS %d MB (allocated, RssAnon: %d MB; mapped files, RssFile: %d MB); Go heap in use %.0f MB; a second pass found %d of %d tokens in the cache; first-sight reviews filling it %.0f/s",
		m.mem.total/1e6, m.mem.anon/1e6, m.mem.file/1e6, m.heapInUse/1e6, m.held, m.entries, m.firstSight)
	if m.contained != nil {
		s += "; the cgroup " + m.contained.String()
	}
	return s
}

// fullCacheMemory runs `portcullis serve` as a process of its own on the
// size's store, as an operator would, reviews as many new tokens as a
// review cache holds (each review leaves an entry in both caches), reviews
// them all again to count how many the cache held, and reads the server
// process's memory. The bench's clients are not in that process. With a
// group, the server runs in it, with GOMEMLIMIT set to the group's limit
// as the manifests set it to the container's.
func (s *scaleSize) fullCacheMemory(t *testing.T, group *memoryCgroup) cacheMemory {
	t.Helper()
	e := s.e
	e.stop()
	entries := e.cfg.Cache.MaxEntries
	ports := testutil.FreePorts(t, 3)
	args := []string{"serve", "--config", filepath.Join(e.dir, app.ConfigFile), "--keys-dir", e.cfg.KeysDir,
		"--bind-address", "127.0.0.1", "--webhook-port", strconv.Itoa(ports[0]), "--secure-port", strconv.Itoa(ports[1]),
		"--metrics-port", strconv.Itoa(ports[2]), "--cache-max-entries", strconv.FormatInt(entries, 10), "--store-type", e.cfg.Store.Type}
	if e.cfg.Store.Type == config.StoreEtcd {
		args = append(args, "--etcd-servers", strings.Join(e.cfg.Store.Endpoints, ","), "--etcd-prefix", e.cfg.Store.Prefix)
	} else {
		args = append(args, "--store-path", e.cfg.Store.Path)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	bin := buildPortcullis(t)
	cmd := exec.Command(bin, args...)
	if group != nil {
		name, wrapped := group.wrap(bin, args)
		cmd = exec.Command(name, wrapped...)
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+strconv.FormatInt(group.limit, 10))
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	admin := e.client(t, "admin")
	issuer := fmt.Sprintf("https://127.0.0.1:%d", ports[1])
	if !pollReady(admin, issuer, time.Minute, 10*time.Millisecond) {
		out, _ := os.ReadFile(logs.Name())
		t.Fatalf("portcullis serve never became ready:\n%s", out)
	}

	hook := e.client(t, "kube-apiserver-client")
	url := fmt.Sprintf("https://127.0.0.1:%d/authenticate", ports[0])
	var all []string
	var firstSight []float64
	for left := int(entries); left > 0; left -= 10000 {
		minted, _ := mintAt(t, admin, issuer, min(left, 10000))
		s.minted += len(minted)
		all = append(all, minted...)
		rate, _ := runLoad(len(minted), concurrency, func(i int) error { return review(hook, url, reviewBody(minted[i])) })
		if rate == 0 {
			t.Fatal("reviews failed")
		}
		firstSight = append(firstSight, rate)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])
	hitsBefore := scrape(t, metricsURL, "portcullis_cache_hits_total")
	if rate, _ := runLoad(len(all), concurrency, func(i int) error { return review(hook, url, reviewBody(all[i])) }); rate == 0 {
		t.Fatal("reviews failed")
	}
	held := int(scrape(t, metricsURL, "portcullis_cache_hits_total") - hitsBefore)
	m := cacheMemory{entries: entries, held: held, mem: residentMemoryOf(t, strconv.Itoa(cmd.Process.Pid)),
		heapInUse: scrape(t, metricsURL, "go_memstats_heap_inuse_bytes"), firstSight: median(firstSight)}
	if group != nil {
		charged := group.memory(t)
		m.contained = &charged
	}
	return m
}

// buildPortcullis builds the portcullis binary into the test's temporary
// directory and returns its path.
func buildPortcullis(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "portcullis")
	build := exec.Command("go", "build", "-o", bin, "portcullis.dev/portcullis/cmd/portcullis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build portcullis: %v", err)
	}
	return bin
}

// scrape reads one sample without labels from a Prometheus text page.
func scrape(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s has no sample %s", url, name)
	return 0
}

func printScale(backend string, rows []*scaleSize, full cacheMemory, budget string) {
	fmt.Printf("\nmemory of `portcullis serve` on the %d-record store (a process of its own), every review cache full (%d entries each): %s\n  %s\n",
		rows[len(rows)-1].records, full.entries, full, budget)
	fmt.Printf("\nPortcullis scale benchmark (%s; one run, one machine; %d interleaved rounds, medians; ratios to the first row)\n\n", backend, scaleRounds)
	fmt.Printf("%12s %10s %10s %12s %12s %12s %12s %10s %8s %12s\n", "records", "fill", "ready", "reviews/s", "cached/s", "create p50", "list p50", "prune p50", "RSS MB", "at the end")
	for _, r := range rows {
		fmt.Printf("%12d %10s %10s %12.0f %12.0f %12s %12s %10s %8d %12d\n", r.records, r.fill.Round(time.Second), r.ready().Round(time.Millisecond),
			median(r.uncached), median(r.cached), r.create().Round(time.Microsecond), r.list().Round(time.Microsecond), r.prune().Round(time.Microsecond), r.rss/1e6, r.records+r.minted)
	}
	for _, r := range rows {
		starts := make([]string, len(r.readies))
		for i, d := range r.readies {
			starts[i] = d.Round(100 * time.Microsecond).String()
		}
		fmt.Printf("%12d starts: %s\n", r.records, strings.Join(starts, ", "))
		fmt.Printf("%12d first-sight reviews/s by round: %s; cached: %s\n", r.records, rates(r.uncached), rates(r.cached))
	}
	first := rows[0]
	for _, r := range rows[1:] {
		fmt.Printf("\n%d vs %d records (target: each within 1.20; rates as first/this):\n", r.records, first.records)
		fmt.Printf("  ready %.2f   reviews %.2f   cached %.2f   create %.2f   list %.2f   prune %.2f\n",
			ratio(r.ready(), first.ready()), median(first.uncached)/median(r.uncached), median(first.cached)/median(r.cached),
			ratio(r.create(), first.create()), ratio(r.list(), first.list()), ratio(r.prune(), first.prune()))
	}
}

func rates(r []float64) string {
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strings.Join(s, ", ")
}

// median is the middle of r.
func median(r []float64) float64 {
	s := slices.Clone(r)
	slices.Sort(s)
	return s[len(s)/2]
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// scaleSize is one size's filled store, the server directory on it, and
// what its rounds measured.
type scaleSize struct {
	e                *env
	records, minted  int // filled, and added since by the rounds
	fill             time.Duration
	readies          []time.Duration // every start, in order
	prunes           []time.Duration
	creates, lists   []time.Duration
	uncached, cached []float64 // one rate a round
	rss              int64     // after the last round
}

// ready, create, list and prune are the medians of the size's samples.
func (s *scaleSize) ready() time.Duration  { return percentile(s.readies, 0.5) }
func (s *scaleSize) create() time.Duration { return percentile(s.creates, 0.5) }
func (s *scaleSize) list() time.Duration   { return percentile(s.lists, 0.5) }
func (s *scaleSize) prune() time.Duration  { return percentile(s.prunes, 0.5) }

// fillSize fills a store (bbolt, or what storeConfig sets) with n records.
func fillSize(t *testing.T, n int, storeConfig func(*config.Config)) *scaleSize {
	t.Helper()
	e := newEnv(t)
	e.stop()
	if storeConfig != nil {
		storeConfig(e.cfg)
	}
	// The default per-user limit: a user's create counts their tokens
	// (front door) and the store counts them again as it writes.
	e.cfg.UserTokens.MaxPerUser = tokens.DefaultMaxPerUser
	start := time.Now()
	fillStore(t, e.cfg.Store, n)
	return &scaleSize{e: e, records: n, fill: time.Since(start)}
}

// measureRound starts a server on the size's store and measures each
// operation once more.
func (s *scaleSize) measureRound(t *testing.T, round int) {
	t.Helper()
	e := s.e
	// Ready: three starts a round.
	for range 3 {
		e.stop()
		start := time.Now()
		e.start(t)
		s.readies = append(s.readies, time.Since(start))
	}

	// Prune: keys rotated out that signed nothing, among the records. The
	// first rotation retires from signing the key that signed the last
	// round's tokens, which stays.
	keysURL := "https://" + e.srv.IssuerAddr().String() + "/apis/portcullis.dev/v1alpha1/signingkeys"
	admin := e.client(t, "admin")
	rotate := func() {
		call(t, admin, http.MethodPost, keysURL, `{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`, http.StatusCreated)
	}
	rotate()
	for range 30 {
		old := activeKey(t, admin, keysURL)
		rotate()
		start := time.Now()
		call(t, admin, http.MethodDelete, keysURL+"/"+old, "", http.StatusOK)
		s.prunes = append(s.prunes, time.Since(start))
	}

	// Reviews: first sight (each token once), then cached. The tokens
	// minted stay in the store: every round adds 4,000 records.
	minted, _ := e.mint(t, 4000)
	s.minted += len(minted)
	hook := e.client(t, "kube-apiserver-client")
	url := "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	uncached, _ := runLoad(len(minted), concurrency, func(i int) error { return review(hook, url, reviewBody(minted[i])) })
	cached, _ := runLoad(20000, concurrency, func(i int) error { return review(hook, url, reviewBody(minted[i%200])) })
	s.uncached, s.cached = append(s.uncached, uncached), append(s.cached, cached)

	// A user with 10 tokens (a new user each round): create latency (the
	// per-user limit reads the user's own range), then list latency.
	tokensURL := "https://" + e.srv.IssuerAddr().String() + "/apis/ext.cattle.io/v1/tokens"
	body := `{"apiVersion":"ext.cattle.io/v1","kind":"Token","spec":{"description":"scale"}}`
	name := fmt.Sprintf("scale-user-%d", round)
	writeUserCert(t, e.dir, name, name)
	user := e.client(t, name)
	for range 10 {
		t0 := time.Now()
		call(t, user, http.MethodPost, tokensURL, body, http.StatusCreated)
		s.creates = append(s.creates, time.Since(t0))
	}
	s.minted += 10
	for range 100 {
		t0 := time.Now()
		data := call(t, user, http.MethodGet, tokensURL, "", http.StatusOK)
		s.lists = append(s.lists, time.Since(t0))
		var l struct{ Items []json.RawMessage }
		if err := json.Unmarshal(data, &l); err != nil || len(l.Items) != 10 {
			t.Fatalf("the user lists %d tokens, want 10: %v", len(l.Items), err)
		}
	}
	s.rss = rss(t)
	e.stop()
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

// activeKey is the name of the signing key that signs now.
func activeKey(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	var l struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct{ State string }
		}
	}
	if err := json.Unmarshal(call(t, c, http.MethodGet, url, "", http.StatusOK), &l); err != nil {
		t.Fatalf("signing keys: %v", err)
	}
	for _, k := range l.Items {
		if k.Status.State == "active" {
			return k.Metadata.Name
		}
	}
	t.Fatal("no active signing key")
	return ""
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

func residentMemory(t *testing.T) resident { return residentMemoryOf(t, "self") }

// residentMemoryOf reads the resident memory of process pid ("self": this
// one).
func residentMemoryOf(t *testing.T, pid string) resident {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/status")
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
