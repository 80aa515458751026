package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoak runs reviews at 80% of the measured maximum for
// PORTCULLIS_SOAK (a duration; `make soak` gives 10m) with mints,
// revocations and a key rotation mixed in. It fails on any error (a valid
// token refused, a revoked one accepted, a non-200 answer), on RSS growth
// over 10%, and on goroutine growth.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("PORTCULLIS_SOAK"))
	if err != nil {
		t.Skip("soaks the server; run `make soak`")
	}
	e := newEnv(t)
	// The caches are sized to the working set (the pool of tokens under
	// review), so that they are full after the warm-up: memory that grows
	// after it is not the caches filling up to their bound.
	e.stop()
	e.cfg.Cache.MaxEntries = 2 * poolSize
	e.start(t)
	hook := e.client(t, "kube-apiserver-client")
	admin := e.client(t, "admin")
	webhookURL := "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	issuer := "https://" + e.srv.IssuerAddr().String()

	valid := &tokenPool{}
	initial, _ := e.mint(t, 500)
	for _, tok := range initial {
		valid.add(tok)
	}
	maxRate, _ := runLoad(30000, concurrency, func(i int) error { return review(hook, webhookURL, reviewBody(valid.pick(i))) })
	target := 0.8 * maxRate

	runtime.GC()
	startMem, startGoroutines, startHeap := residentMemory(t), pprof.Lookup("goroutine").Count(), liveHeap()
	var reviews, failures, mints, revocations atomic.Int64
	var failMu sync.Mutex
	var firstFailure string
	fail := func(format string, args ...any) {
		failures.Add(1)
		failMu.Lock()
		defer failMu.Unlock()
		if firstFailure == "" {
			firstFailure = fmt.Sprintf(format, args...)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Reviews, paced: each worker sends one every workers/target seconds.
	interval := time.Duration(float64(concurrency) / target * float64(time.Second))
	for w := range concurrency {
		wg.Go(func() {
			next := time.Now()
			for i := w; ; i += concurrency {
				select {
				case <-stop:
					return
				default:
				}
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait)
				}
				next = next.Add(interval)
				tok := valid.pick(i)
				reviews.Add(1)
				if err := review(hook, webhookURL, reviewBody(tok)); err != nil && valid.has(tok) {
					fail("a valid token was refused: %v", err)
				}
			}
		})
	}
	// Mints every 100 ms; a revocation every second, checked at once; a
	// key rotation half-way.
	var revoked []string
	wg.Go(func() {
		minting := time.NewTicker(100 * time.Millisecond)
		defer minting.Stop()
		revokes := time.NewTicker(time.Second)
		defer revokes.Stop()
		rotate := time.After(d / 2)
		for {
			select {
			case <-stop:
				return
			case <-minting.C:
				tok, err := mintOne(admin, issuer)
				if err != nil {
					fail("a mint failed: %v", err)
					continue
				}
				mints.Add(1)
				valid.add(tok)
			case <-revokes.C:
				tok := valid.take()
				resp, err := admin.Post(issuer+"/apis/portcullis.dev/v1alpha1/revocations", "application/json",
					strings.NewReader(`{"apiVersion":"portcullis.dev/v1alpha1","kind":"Revocation","metadata":{"generateName":"soak-"},"spec":{"jti":"`+jtiOf(tok)+`"}}`))
				if err != nil || resp.StatusCode != http.StatusCreated {
					fail("a revocation failed: %v", err)
					continue
				}
				resp.Body.Close()
				revocations.Add(1)
				// The last revoked tokens are checked again at the end.
				if revoked = append(revoked, tok); len(revoked) > 100 {
					revoked = revoked[1:]
				}
				if review(hook, webhookURL, reviewBody(tok)) == nil {
					fail("a revoked token was accepted")
				}
			case <-rotate:
				resp, err := admin.Post(issuer+"/apis/portcullis.dev/v1alpha1/signingkeys", "application/json",
					strings.NewReader(`{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{}}`))
				if err != nil || resp.StatusCode != http.StatusCreated {
					fail("the key rotation failed: %v", err)
					continue
				}
				resp.Body.Close()
			}
		}
	})
	// RSS every tenth of the run: caches and the store file fill during
	// the first part (each mint adds a token to review); flat means the
	// later samples stay near the one after that warm-up.
	start := time.Now()
	var samples []resident
	for range 10 {
		time.Sleep(d / 10)
		samples = append(samples, residentMemory(t))
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	for _, tok := range revoked {
		if review(hook, webhookURL, reviewBody(tok)) == nil {
			fail("a revoked token was accepted at the end")
		}
	}
	time.Sleep(2 * time.Second) // idle connections and timers wind down
	runtime.GC()
	endMem, endGoroutines, endHeap := residentMemory(t), pprof.Lookup("goroutine").Count(), liveHeap()

	fmt.Printf("\nPortcullis soak (bbolt; one run, one machine)\n\n")
	fmt.Printf("  %s at %.0f reviews/s (80%% of the measured %.0f/s): %d reviews (%.0f/s), %d mints, %d revocations, 1 rotation\n",
		elapsed.Round(time.Second), target, maxRate, reviews.Load(), float64(reviews.Load())/elapsed.Seconds(), mints.Load(), revocations.Load())
	fmt.Printf("  errors: %d\n", failures.Load())
	series := func(of func(resident) int64) string {
		var mb []string
		for _, m := range samples {
			mb = append(mb, strconv.FormatInt(of(m)>>20, 10))
		}
		return strings.Join(mb, " ")
	}
	fmt.Printf("  RSS: %d MB at the start, %d MB at the end; every tenth of the run (MB): %s\n", startMem.total>>20, endMem.total>>20, series(func(m resident) int64 { return m.total }))
	fmt.Printf("    allocated (RssAnon): %d -> %d MB: %s\n", startMem.anon>>20, endMem.anon>>20, series(func(m resident) int64 { return m.anon }))
	fmt.Printf("    mapped store file (RssFile): %d -> %d MB: %s\n", startMem.file>>20, endMem.file>>20, series(func(m resident) int64 { return m.file }))
	fmt.Printf("    live Go heap after GC: %d -> %d MB\n", startHeap>>20, endHeap>>20)
	fmt.Printf("  goroutines: %d at the start, %d at the end\n", startGoroutines, endGoroutines)
	if failures.Load() > 0 {
		t.Fatalf("%d errors; the first: %s", failures.Load(), firstFailure)
	}
	// Flat: what the process allocated stays within 10% of its level after
	// the warm-up. The mapped pages of the store file grow with the data
	// (tokens minted and revoked during the run) and are reported above.
	if warm := samples[1].anon; endMem.anon > warm+warm/10 {
		t.Fatalf("allocated memory (RssAnon) grew from %d MB after the warm-up to %d MB", warm>>20, endMem.anon>>20)
	}
	if endGoroutines > startGoroutines+10 {
		t.Fatalf("goroutines grew from %d to %d", startGoroutines, endGoroutines)
	}
}

// liveHeap is the Go heap in use right after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// mintOne mints a token through the TokenRequest API on c's connections.
func mintOne(c *http.Client, issuer string) (string, error) {
	resp, err := c.Post(issuer+"/api/v1/namespaces/bench/serviceaccounts/sa/token", "application/json", strings.NewReader(`{"spec":{}}`))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tr struct{ Status struct{ Token string } }
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("mint: %d %v", resp.StatusCode, err)
	}
	return tr.Status.Token, nil
}

// poolSize is how many tokens the soak reviews at a time: a mint pushes the
// oldest out (still valid, no longer reviewed).
const poolSize = 1000

// tokenPool is the set of valid tokens the soak reviews.
type tokenPool struct {
	mu     sync.Mutex
	tokens []string
	live   map[string]bool
}

func (p *tokenPool) add(tok string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live == nil {
		p.live = map[string]bool{}
	}
	p.tokens = append(p.tokens, tok)
	p.live[tok] = true
	if len(p.tokens) > poolSize {
		delete(p.live, p.tokens[0])
		p.tokens = slices.Delete(p.tokens, 0, 1)
	}
}

func (p *tokenPool) pick(i int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokens[i%len(p.tokens)]
}

// take removes the oldest token from the pool, to be revoked.
func (p *tokenPool) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	tok := p.tokens[0]
	p.tokens = slices.Delete(p.tokens, 0, 1)
	delete(p.live, tok)
	return tok
}

// has reports whether tok is still valid (not taken for revocation).
func (p *tokenPool) has(tok string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live[tok]
}
