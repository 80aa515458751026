package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"portcullis.dev/portcullis/config"
)

// openStalledWatch starts a watch as the admin over HTTP/1.1 (so that only
// the kernel's socket buffers stand between the server and the client) and
// never reads it.
func (h *harness) openStalledWatch(path string) *http.Response {
	h.t.Helper()
	c := h.adminHTTP()
	tr := c.Transport.(*http.Transport)
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2 flow-control window
	// A small receive buffer, so that the kernel cannot hold the whole
	// stream on the client's behalf and the server must fall behind.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	tr.DialContext = dialer.DialContext
	c.Timeout = 0
	resp, err := c.Get(h.issuerURL(path + "?watch=true"))
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("watch %s: %d", path, resp.StatusCode)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// drain reads a watch stream to its end and counts its events; it fails
// the test if the stream is still open after a bounded wait.
func drain(t *testing.T, resp *http.Response) int {
	t.Helper()
	n := 0
	done := make(chan error, 1)
	go func() {
		dec := json.NewDecoder(resp.Body)
		for {
			var e struct{ Type string }
			if err := dec.Decode(&e); err != nil {
				done <- err
				return
			}
			n++
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "unexpected EOF") {
			t.Fatalf("watch stream ended with %v", err)
		}
	case <-time.After(2 * time.Minute):
		resp.Body.Close()
		t.Fatal("the stalled watch was never closed")
	}
	return n
}

// TestStalledWatchersNeverBlockWrites: a tokens watch and a revocations
// watch whose client stops reading must not hold up any write. 2,000 writes
// go through the API (1,000 token creates, 1,000 revocations, each event
// large enough to fill socket buffers); every one answers, and both
// stalled watches are closed (their clients list again).
func TestStalledWatchersNeverBlockWrites(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.UserTokens.MaxPerUser = 0 })
	h.writeCert("alice", "alice")
	tokensWatch := h.openStalledWatch("/apis/ext.cattle.io/v1/tokens")
	revocationsWatch := h.openStalledWatch("/apis/portcullis.dev/v1alpha1/revocations")

	cfg := h.restConfig(AdminKubeconfig)
	cfg.QPS = -1 // no client-side rate limit: the server's speed is what is measured
	admin, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	revocations := admin.Resource(schema.GroupVersionResource{Group: "portcullis.dev", Version: "v1alpha1", Resource: "revocations"})
	tokens := h.tokensAsUnlimited("alice")
	padding := strings.Repeat("x", 8<<10)
	writes := 2000
	if testing.Short() {
		writes = 200
	}
	var failed atomic.Int64
	var firstErr sync.Once
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var err error
				if i%2 == 0 {
					obj := tokenObject(map[string]any{"description": "stall"})
					obj.SetAnnotations(map[string]string{"example.com/padding": padding})
					var out *unstructured.Unstructured
					if out, err = tokens.Create(ctx, obj, metav1.CreateOptions{}); err == nil {
						v, _, _ := unstructured.NestedString(out.Object, "status", "value")
						h.remember(v)
					}
				} else {
					_, err = revocations.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
						"apiVersion": "portcullis.dev/v1alpha1", "kind": "Revocation",
						"metadata": map[string]any{"name": fmt.Sprintf("stall-%d", i)},
						"spec":     map[string]any{"subject": fmt.Sprintf("user-%d", i), "reason": padding},
					}}, metav1.CreateOptions{})
				}
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("write %d: %v", i, err) })
				}
			}
		})
	}
	start := time.Now()
	for i := range writes {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d writes took %v with two stalled watchers", writes, time.Since(start).Round(time.Millisecond))
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d writes failed while watchers stalled", n, writes)
	}
	for name, w := range map[string]*http.Response{"tokens": tokensWatch, "revocations": revocationsWatch} {
		n := drain(t, w)
		if n >= writes/2 {
			t.Fatalf("%s watch delivered all %d events: it never fell behind, the test proves nothing", name, n)
		}
		t.Logf("%s watch: closed after %d events", name, n)
	}

}
