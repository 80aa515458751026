package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// acked is what the server acknowledged before it was killed.
type acked struct {
	mu      sync.Mutex
	tokens  map[string]string // jti -> token
	revoked map[string]string // jti -> revocation name
	// inFlight are revocations sent but not acknowledged: durable or not,
	// both outcomes are correct.
	inFlight map[string]bool
}

func (in *instance) certClient(t *testing.T, base string) *http.Client {
	t.Helper()
	c := in.httpClient(t)
	cert, err := tls.LoadX509KeyPair(filepath.Join(in.dir, base+".crt"), filepath.Join(in.dir, base+".key"))
	if err != nil {
		t.Fatal(err)
	}
	c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	return c
}

// The crash test runs at least minRounds rounds and until at least
// minTokens tokens and minRevocations revocations were acknowledged
// (maxRounds at most).
const (
	minRounds, maxRounds      = 20, 300
	minTokens, minRevocations = 1000, 200
)

// TestCrashKill9 kills serve with SIGKILL in the middle of a mint and revoke
// load, round after round. After each restart the store must open cleanly,
// and every token and revocation the API acknowledged must still be there
// and in force.
func TestCrashKill9(t *testing.T) {
	const workers = 4
	in := initInstance(t)
	state := &acked{tokens: map[string]string{}, revoked: map[string]string{}, inFlight: map[string]bool{}}
	rounds := 0
	for ; rounds < maxRounds && (rounds < minRounds || !state.enough()); rounds++ {
		round := rounds
		in.serve(t)
		verifyAcked(t, in, state, round)

		admin := in.certClient(t, "admin")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { load(in, admin, state, round, w, stop) })
		}
		// Let the load run for a while that differs each round, then crash.
		time.Sleep(time.Duration(100+37*round%250) * time.Millisecond)
		in.proc.kill9()
		close(stop)
		wg.Wait()
	}
	in.serve(t)
	verifyAcked(t, in, state, rounds)
	state.mu.Lock()
	defer state.mu.Unlock()
	if len(state.tokens) < minTokens || len(state.revoked) < minRevocations {
		t.Fatalf("the load did too little to prove anything in %d rounds: %d tokens, %d revocations", rounds, len(state.tokens), len(state.revoked))
	}
	t.Logf("%d rounds: %d acknowledged tokens and %d acknowledged revocations all survived kill -9", rounds, len(state.tokens), len(state.revoked))
}

// enough reports whether the acknowledged load is large enough to prove
// anything.
func (a *acked) enough() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tokens) >= minTokens && len(a.revoked) >= minRevocations
}

// load mints tokens and revokes every third one until stop or the server dies.
func load(in *instance, c *http.Client, state *acked, round, worker int, stop <-chan struct{}) {
	base := "https://127.0.0.1:" + itoa(in.securePort)
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := c.Post(fmt.Sprintf("%s/api/v1/namespaces/crash/serviceaccounts/sa-%d-%d/token", base, round, worker),
			"application/json", strings.NewReader(`{"spec":{}}`))
		if err != nil {
			return
		}
		var tr struct {
			Status struct{ Token string }
		}
		json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || tr.Status.Token == "" {
			continue
		}
		jti := jtiOf(tr.Status.Token)
		state.mu.Lock()
		state.tokens[jti] = tr.Status.Token
		state.mu.Unlock()
		if i%3 != 0 {
			continue
		}
		state.mu.Lock()
		state.inFlight[jti] = true
		state.mu.Unlock()
		resp, err = c.Post(base+"/apis/portcullis.dev/v1alpha1/revocations", "application/json",
			strings.NewReader(`{"apiVersion":"portcullis.dev/v1alpha1","kind":"Revocation","metadata":{"generateName":"crash-"},"spec":{"jti":"`+jti+`"}}`))
		if err != nil {
			return
		}
		var rev struct{ Metadata struct{ Name string } }
		json.NewDecoder(resp.Body).Decode(&rev)
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			state.mu.Lock()
			state.revoked[jti] = rev.Metadata.Name
			delete(state.inFlight, jti)
			state.mu.Unlock()
		}
	}
}

// verifyAcked reviews every acknowledged token through the webhook and lists
// the revocations.
func verifyAcked(t *testing.T, in *instance, state *acked, round int) {
	t.Helper()
	state.mu.Lock()
	defer state.mu.Unlock()
	hook := in.certClient(t, "kube-apiserver-client")
	url := "https://127.0.0.1:" + itoa(in.webhookPort) + "/authenticate"
	for jti, token := range state.tokens {
		resp, err := hook.Post(url, "application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`))
		if err != nil {
			t.Fatalf("round %d: review: %v", round, err)
		}
		var tr struct {
			Status struct{ Authenticated bool }
		}
		json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		_, revoked := state.revoked[jti]
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: review answered %d", round, resp.StatusCode)
		}
		if state.inFlight[jti] {
			continue
		}
		if tr.Status.Authenticated == revoked {
			t.Fatalf("round %d: token %s (revoked %v): status %d authenticated %v", round, jti, revoked, resp.StatusCode, tr.Status.Authenticated)
		}
	}
	resp, err := in.certClient(t, "admin").Get("https://127.0.0.1:" + itoa(in.securePort) + "/apis/portcullis.dev/v1alpha1/revocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Items []struct{ Metadata struct{ Name string } }
	}
	json.NewDecoder(resp.Body).Decode(&list)
	have := map[string]bool{}
	for _, it := range list.Items {
		have[it.Metadata.Name] = true
	}
	for jti, name := range state.revoked {
		if !have[name] {
			t.Fatalf("round %d: acknowledged revocation %s of %s is gone", round, name, jti)
		}
	}
}
