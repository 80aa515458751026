package app

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
	"portcullis.dev/portcullis/keys/keystest"
)

// kidOf reads the kid header of a token.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	json.Unmarshal(raw, &h)
	return h.Kid
}

func (h *harness) keysCLI(args ...string) string {
	h.t.Helper()
	var out strings.Builder
	kubeconfig := filepath.Join(h.dir, AdminKubeconfig)
	if h.base != nil {
		kubeconfig = h.adminKubeconfigFor()
	}
	o := &KeysOptions{ClientOptions: ClientOptions{Kubeconfig: kubeconfig}}
	if len(args) > 1 && args[len(args)-1] == "--now" {
		o.Now, args = true, args[:len(args)-1]
	}
	if err := RunKeys(context.Background(), o, args, &out); err != nil {
		h.t.Fatalf("keys %v: %v", args, err)
	}
	return out.String()
}

// rotateAndWait rotates and waits (bounded) until the new key signs.
func (h *harness) rotateAndWait() string {
	h.t.Helper()
	out := h.keysCLI("rotate")
	kid := strings.Fields(out)[2]
	for range 100 {
		for _, line := range strings.Split(h.keysCLI("list"), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == kid && f[2] == "active" {
				return kid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("key %s was never promoted:\n%s", kid, h.keysCLI("list"))
	return ""
}

// pool is a set of tokens the review workers pick from.
type pool struct {
	mu     sync.Mutex
	tokens []string
}

func (p *pool) add(tok string) { p.mu.Lock(); p.tokens = append(p.tokens, tok); p.mu.Unlock() }
func (p *pool) pick(i int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tokens) == 0 {
		return ""
	}
	return p.tokens[i%len(p.tokens)]
}

// mintWith mints on h until the token is signed by kid: a replica signs
// with a promoted key once the stored ring reaches it (milliseconds).
func (h *harness) mintWith(kid string) (string, int) {
	h.t.Helper()
	for i := range 200 {
		if tok := h.mint("load", "sa", 3600).Status.Token; kidOf(h.t, tok) == kid {
			return tok, i
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("replica %s never signed with the promoted key %s", h.issuerURL(""), kid)
	return "", 0
}

// TestKeyRotationUnderLoad: ten rotations, a retirement and a prune,
// through three replicas on one etcd, with reviews spread over all three:
// no valid token is refused, and once a retirement has reached every
// replica no replica accepts the retired key's tokens again.
func TestKeyRotationUnderLoad(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	h := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/rotation/"}
		c.KeyRotation.PropagationDelay = metav1.Duration{Duration: 300 * time.Millisecond}
		c.Log.Level = "info"
	})
	replicas := []*harness{h, h.replica(), h.replica()}
	ctx := context.Background()
	first := strings.Fields(strings.Split(h.keysCLI("list"), "\n")[1])[0] // the kid of the only key

	// The first key signs only short-lived user tokens, so it can be pruned
	// once they expire.
	expiring := &pool{}
	for range 5 {
		_, v := h.createToken(adminBase, map[string]any{"ttl": int64(1500)})
		expiring.add(v)
	}
	expiresAt := time.Now().Add(1500 * time.Millisecond)

	valid, retiredPool := &pool{}, &pool{}
	var reviews, failures, acceptedRetired atomic.Int64
	var retired atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad() // also when the test fails early
	client := h.httpClient(webhookClientBase)
	review := func(r *harness, token string) (bool, error) {
		resp, err := client.Post(r.webhookURL(), "application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+token+`"}}`))
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return false, &httpError{resp.StatusCode, string(body)}
		}
		return strings.Contains(string(body), `"authenticated":true`), nil
	}
	for w := range 6 {
		r := replicas[w%len(replicas)]
		wg.Go(func() {
			for i := w; ; i += 6 {
				select {
				case <-stop:
					return
				default:
				}
				if tok := valid.pick(i); tok != "" {
					reviews.Add(1)
					if ok, err := review(r, tok); !ok || err != nil {
						failures.Add(1)
						t.Errorf("replica %s refused a valid token: %v", r.webhookURL(), err)
					}
				}
				if tok := retiredPool.pick(i); tok != "" {
					wasRetired := retired.Load()
					if ok, _ := review(r, tok); ok && wasRetired {
						acceptedRetired.Add(1)
					}
				}
				review(r, expiring.pick(i))
			}
		})
	}

	start := time.Now()
	var retiredKid string
	lateMints := 0
	for round := range 10 {
		// Rotate through one replica, mint through the next: each signs
		// with the promoted key.
		kid := replicas[round%3].rotateAndWait()
		tok, late := replicas[(round+1)%3].mintWith(kid)
		lateMints += late
		if round == 4 {
			retiredKid = kid
			retiredPool.add(tok) // this key will be retired: its tokens go only here
		} else {
			valid.add(tok)
		}
		if round == 5 {
			replicas[2].keysCLI("retire", retiredKid)
			// Propagation to the other replicas is the watch's bound (see
			// make bench); from the moment each refuses, none may accept.
			tok := retiredPool.pick(0)
			for _, r := range replicas {
				for range 200 {
					if !r.reviewAt(tok) {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			retired.Store(true)
		}
	}
	// The first key's tokens have expired: it can be pruned. A verifying key
	// with live tokens cannot.
	time.Sleep(time.Until(expiresAt) + 100*time.Millisecond)
	replicas[1].keysCLI("prune", first)
	list := h.keysCLI("list")
	if strings.Contains(list, first) {
		t.Fatalf("the first key was not pruned:\n%s", list)
	}
	keysAPI := h.signingKeys()
	second := kidOf(t, valid.pick(0))
	if err := keysAPI.Delete(ctx, second, metav1.DeleteOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("pruning a key whose tokens live: %v, want 409 Conflict", err)
	}
	stopLoad()
	elapsed := time.Since(start)

	if failures.Load() != 0 || acceptedRetired.Load() != 0 {
		t.Fatalf("%d failed reviews of valid tokens, %d accepted tokens of a retired key", failures.Load(), acceptedRetired.Load())
	}
	if reviews.Load() < 100 {
		t.Fatalf("only %d reviews: the load proves nothing", reviews.Load())
	}
	t.Logf("10 rotations, 1 retirement, 1 prune through 3 replicas in %v: %d reviews of valid tokens (%.0f/s, 6 clients over 3 replicas), 0 failed, 0 retired-key tokens accepted; %d mints right after a promotion still signed by the old key",
		elapsed.Round(time.Millisecond), reviews.Load(), float64(reviews.Load())/elapsed.Seconds(), lateMints)
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.body }

func TestJWKSConsumerAcrossRotations(t *testing.T) {
	h := startServer(t, func(c *config.Config) {
		// JWKS answers may be cached for half the delay (2s): a consumer that
		// follows Cache-Control refreshes at least once before the key signs.
		c.KeyRotation.PropagationDelay = metav1.Duration{Duration: 4 * time.Second}
		c.Log.Level = "info"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A standard JOSE verifier: jwx's JWKS cache, refreshing as the
	// Cache-Control header allows (half the propagation delay).
	// The refresh window is how often jwx looks for due refreshes (15 min by
	// default); verifiers that follow Cache-Control need it shorter.
	cache := jwk.NewCache(ctx, jwk.WithRefreshWindow(time.Second)) // under 1s httprc falls back to 15 min
	url := h.issuerURL("/openid/v1/jwks")
	if err := cache.Register(url, jwk.WithHTTPClient(h.httpClient("")), jwk.WithMinRefreshInterval(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Refresh(ctx, url); err != nil {
		t.Fatal(err)
	}
	verify := func(token string) error {
		set, err := cache.Get(ctx, url)
		if err != nil {
			return err
		}
		_, err = jws.Verify([]byte(token), jws.WithKeySet(set))
		return err
	}
	for round := range 3 {
		if err := verify(h.mint("jwks", "sa", 3600).Status.Token); err != nil {
			t.Fatalf("round %d, before rotation: %v", round, err)
		}
		kid := h.rotateAndWait()
		tok := h.mint("jwks", "sa", 3600).Status.Token
		if kidOf(t, tok) != kid {
			t.Fatal("not signed by the new key")
		}
		if err := verify(tok); err != nil {
			t.Fatalf("round %d: the JWKS consumer cannot verify a token of the new key right after promotion: %v", round, err)
		}
	}

	resp, err := h.httpClient("").Get(h.issuerURL("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	if doc.Issuer != h.cfg.Issuer || doc.JWKSURI != h.cfg.Issuer+"/openid/v1/jwks" {
		t.Fatalf("discovery = %+v", doc)
	}
	for _, p := range []string{"/.well-known/jwks.json", "/openid/v1/jwks"} {
		resp, err := h.httpClient("").Get(h.issuerURL(p))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "public, max-age=2" {
			t.Fatalf("%s: %d %q", p, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	}
}

// TestRetiringTheActiveKeyKeepsMinting: `keys rotate` (the new key waits
// as next) then `keys retire <active>`: the next mint succeeds, signed by
// the promoted key, and the retired key's tokens are refused.
func TestRetiringTheActiveKeyKeepsMinting(t *testing.T) {
	h := startServer(t, nil) // propagation delay 10m: the new key would wait
	before := h.mint("ns", "sa", 3600).Status.Token
	active := kidOf(t, before)
	next := strings.Fields(h.keysCLI("rotate"))[2]
	out := h.keysCLI("retire", active)
	tok := h.mint("ns", "sa", 3600).Status.Token
	if got := kidOf(t, tok); got != next {
		t.Fatalf("after retiring the active key, a token signed by %s; want the promoted key %s (retire said %q)", got, next, out)
	}
	if h.reviewAt(before) || !h.reviewAt(tok) {
		t.Fatal("the retired key's token is accepted, or the promoted key's refused")
	}
	// With no next key, a new one is made and signs.
	out = h.keysCLI("retire", next)
	if tok := h.mint("ns", "sa", 3600).Status.Token; kidOf(t, tok) == next || !h.reviewAt(tok) {
		t.Fatalf("retiring the only signing key left no working signer (retire said %q)", out)
	}
}

// TestKMSPluginOutage: the ring is sealed by a real KMS v2 plugin. Stopped,
// reviews and mints go on (the signing key was unsealed at start); a
// rotation answers 503 naming the KMS plugin; started again, the rotation
// goes through.
func TestKMSPluginOutage(t *testing.T) {
	plugin := keystest.StartKMSPlugin(t)
	h := startServer(t, func(c *config.Config) {
		c.KeyEncryption = config.KeyEncryption{Provider: plugin.Provider(), Timeout: metav1.Duration{Duration: 500 * time.Millisecond}}
	})
	before := h.mint("ns", "sa", 3600).Status.Token
	// Over plain HTTP: client-go would retry the 503s it is told to.
	rotate := func() (int, string) {
		return post(t, h.adminHTTP(), h.issuerURL("/apis/portcullis.dev/v1alpha1/signingkeys"),
			`{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`)
	}

	plugin.Stop()
	if !h.reviewAt(before) {
		t.Fatal("a review failed while the KMS plugin was down")
	}
	if tok := h.mint("ns", "sa", 3600).Status.Token; !h.reviewAt(tok) {
		t.Fatal("a mint with the unsealed signing key failed while the KMS plugin was down")
	}
	code, body := rotate()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "KMS plugin") || !strings.Contains(body, `"kind":"Status"`) {
		t.Fatalf("rotate while the KMS plugin is down = %d %s, want a 503 Status naming the KMS plugin", code, body)
	}

	plugin.Start()
	for range 50 { // gRPC reconnects with a backoff
		if code, body = rotate(); code == http.StatusCreated {
			break
		}
	}
	if code != http.StatusCreated {
		t.Fatalf("rotate after the KMS plugin came back: %d %s", code, body)
	}
	if tok := h.mint("ns", "sa", 3600).Status.Token; kidOf(t, tok) == kidOf(t, before) || !h.reviewAt(tok) {
		t.Fatal("the key rotated in after the outage does not sign")
	}
}

// TestRetireThroughAnotherReplicaAtOnce: a key rotated in through A and
// retired through B right away is found by B (which reads the stored ring
// before answering 404), however far B's watch lags.
func TestRetireThroughAnotherReplicaAtOnce(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/at-once/"}
	})
	b := a.replica()
	// Warm connections on both sides, so that B's answer comes as fast as
	// it can: the race is real only then.
	atA, atB := a.adminHTTP(), b.adminHTTP()
	path := "/apis/portcullis.dev/v1alpha1/signingkeys"
	for _, h := range []struct {
		c *http.Client
		r *harness
	}{{atA, a}, {atB, b}} {
		resp, err := h.c.Get(h.r.issuerURL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range 20 {
		code, body := post(t, atA, a.issuerURL(path), `{"apiVersion":"portcullis.dev/v1alpha1","kind":"SigningKey","spec":{"immediate":true}}`)
		if code != http.StatusCreated {
			t.Fatalf("rotate through A: %d %s", code, body)
		}
		var key struct{ Metadata struct{ Name string } }
		if err := json.Unmarshal([]byte(body), &key); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPatch, b.issuerURL(path+"/"+key.Metadata.Name), strings.NewReader(`{"spec":{"retired":true}}`))
		req.Header.Set("Content-Type", "application/merge-patch+json")
		resp, err := atB.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("retire through B right after the rotation through A: %d %s", resp.StatusCode, data)
		}
	}
}
