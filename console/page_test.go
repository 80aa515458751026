package console

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// dialCounter is a backend that counts dials and has no consoles.
type dialCounter struct{ dials atomic.Int32 }

func (d *dialCounter) Dial(context.Context, string, string) (net.Conn, error) {
	d.dials.Add(1)
	return nil, ErrNoSuchVM
}

// refuseAll is a verifier that refuses every token: the page and the
// asset routes never ask it.
type refuseAll struct{ checks atomic.Int32 }

func (r *refuseAll) Check(context.Context, string, string, string) error {
	r.checks.Add(1)
	return context.Canceled
}

func newTestProxy(t *testing.T) (http.Handler, *refuseAll, *dialCounter) {
	t.Helper()
	v, b := &refuseAll{}, &dialCounter{}
	p, err := New(Options{Verifier: v, Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return p.Handler(), v, b
}

func get(h http.Handler, target string) *http.Response {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	return w.Result()
}

func TestConsolePage(t *testing.T) {
	h, v, _ := newTestProxy(t)
	resp := get(h, "/console/%3Cscript%3Ealert(1)%3C%2Fscript%3E/vm1")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "<script>alert(1)") {
		t.Fatalf("the namespace from the path reached the page unescaped:\n%s", body)
	}
	if !strings.Contains(string(body), "&lt;script&gt;alert(1)&lt;/script&gt;/vm1") {
		t.Fatalf("the page does not name its VM:\n%s", body)
	}
	for header, want := range map[string]string{
		"Content-Security-Policy": consolePageCSP,
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := resp.Header.Get(header); got != want {
			t.Errorf("%s: %q, want %q", header, got, want)
		}
	}
	if v.checks.Load() != 0 {
		t.Fatal("the page checked a token: it carries none")
	}
}

func TestConsoleAssets(t *testing.T) {
	h, _, _ := newTestProxy(t)
	for _, path := range []string{"/assets/console.js", "/assets/console.css", "/assets/novnc/core/rfb.js",
		"/assets/novnc/vendor/pako/lib/zlib/inflate.js", "/assets/novnc/LICENSE.MPL-2.0"} {
		resp := get(h, path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, nosniff %q", path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
		}
		if strings.HasSuffix(path, ".js") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("%s: Content-Type %q: browsers load modules only as JavaScript", path, resp.Header.Get("Content-Type"))
		}
	}
	if resp := get(h, "/assets/page.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the page template is served as an asset: %d", resp.StatusCode)
	}
}

// TestNotAWebsocket: a plain GET of a console's websocket address is refused
// before its token is checked or the VM dialled.
func TestNotAWebsocket(t *testing.T) {
	h, v, b := newTestProxy(t)
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/vnc/vms/vm1", nil)
	r.Header.Set("Authorization", "Bearer x.y.z")
	h.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || v.checks.Load() != 0 || b.dials.Load() != 0 {
		t.Fatalf("%d, %d checks, %d dials: want 400 before any check or dial", w.Code, v.checks.Load(), b.dials.Load())
	}
}
