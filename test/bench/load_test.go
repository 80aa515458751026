package bench

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"

	"portcullis.dev/portcullis/keys"
)

// rawSign signs n VNC-like payloads with the ring's key, nothing else.
func rawSign(tb testing.TB, dir string, n int) float64 {
	tb.Helper()
	ring, err := keys.LoadDir(filepath.Join(dir, "keys"))
	if err != nil {
		tb.Fatal(err)
	}
	payload := []byte(`{"iss":"https://portcullis.portcullis.svc","sub":"system:serviceaccount:vms:vm-vnc-access","aud":["https://kubernetes.default.svc.cluster.local","token.kubevirt.io/vnc"],"exp":1795439106,"iat":1795435506,"nbf":1795435506,"jti":"aOqt09fmGPQtKPxwM9v64A"}`)
	rate, _ := runLoad(n, concurrency, func(int) error {
		_, err := jws.Sign(payload, jws.WithKey(ring[0].Algorithm, ring[0].Private()))
		return err
	})
	return rate
}

// reviewBody is a v1 TokenReview for token.
func reviewBody(token string) []byte {
	return []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}`)
}

// review posts one TokenReview and checks the answer is authenticated.
func review(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"authenticated":true`)) {
		return fmt.Errorf("review: %d %s", resp.StatusCode, out)
	}
	return nil
}

// runLoad calls fn(0..n-1) from conc goroutines and returns calls per second
// and each call's latency. The first error stops the load and is fatal to
// the caller through panic-free reporting: runLoad returns rate 0.
func runLoad(n, conc int, fn func(i int) error) (float64, []time.Duration) {
	var next atomic.Int64
	var failed atomic.Value
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := fn(i); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		fmt.Fprintln(os.Stderr, "load failed:", err)
		return 0, nil
	}
	return float64(n) / time.Since(start).Seconds(), lat
}

func percentile(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// echoServer is the baseline: a bare Go HTTPS server with the same TLS and
// mTLS set-up that decodes a TokenReview and answers a fixed authenticated
// one in the request's version, doing no verification at all.
func echoServer(tb testing.TB, dir string) string {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "serving.crt"), filepath.Join(dir, "serving.key"))
	if err != nil {
		tb.Fatal(err)
	}
	// The webhook's client CA: the one that signed kube-apiserver-client.
	pem, _ := os.ReadFile(filepath.Join(dir, "webhook-client-ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				APIVersion string `json:"apiVersion"`
				Spec       struct{ Token string }
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"apiVersion": req.APIVersion, "kind": "TokenReview", "status": map[string]any{
				"authenticated": true, "user": map[string]any{"username": "system:serviceaccount:bench:sa",
					"groups": []string{"system:serviceaccounts", "system:serviceaccounts:bench"}}}})
		}),
	}
	go srv.ServeTLS(l, "", "")
	tb.Cleanup(func() { srv.Close() })
	return "https://" + l.Addr().String() + "/authenticate"
}

// rawVerify verifies tokens with jwx and the ring's key, nothing else: the
// floor of what any review must do for an uncached token.
func rawVerify(tb testing.TB, dir string, tokens []string) float64 {
	tb.Helper()
	ring, err := keys.LoadDir(filepath.Join(dir, "keys"))
	if err != nil {
		tb.Fatal(err)
	}
	key := ring[0]
	rate, _ := runLoad(len(tokens), concurrency, func(i int) error {
		_, err := jws.Verify([]byte(tokens[i]), jws.WithKey(key.Algorithm, key.RawPublic()))
		return err
	})
	return rate
}
