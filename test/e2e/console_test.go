package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser console end to end, with real parts: QEMU (no disk: its
// SeaBIOS screen is the VM's console) serves VNC on a unix socket behind
// `portcullis vnc-proxy --backend map:FILE`; headless Chromium loads the
// proxy's console page with a token minted by `portcullis vnc`; revoking the
// VM, retiring the token's key or the token's expiry closes the page's
// session, and the page says why.

// consoleProxy is a running `portcullis vnc-proxy` process.
type consoleProxy struct {
	base string // https://127.0.0.1:PORT
	proc *process
}

// startQEMU boots a diskless VM whose VNC server listens on a unix socket,
// and returns the socket's path.
func startQEMU(t *testing.T) string {
	t.Helper()
	qemu := systemTool(t, "qemu-system-x86_64", "qemu-system-x86")
	dir, err := os.MkdirTemp("", "qemu-") // short: a unix socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vnc.sock")
	p := start(t, qemu, "-nodefaults", "-no-user-config", "-machine", "pc,accel=tcg", "-m", "32",
		"-vga", "std", "-display", "none", "-vnc", "unix:"+sock, "-serial", "none", "-monitor", "none")
	for range 400 {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		select {
		case <-p.done:
			t.Fatalf("qemu exited: %v\n%s", p.err, p.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Fatalf("qemu's VNC socket never answered:\n%s", p.logs.String())
	return ""
}

// systemTool finds a program installed from Debian's packages; the test
// fails (it does not skip) without it, so CI cannot pass without it.
func systemTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (apt-get install %s; .ci/run installs it)", name, pkg)
	}
	return path
}

// startConsoleProxy runs vnc-proxy in front of vms/vm1 (QEMU at sock),
// verifying online against in's webhook, or offline from its JWKS and
// revocation watch.
func startConsoleProxy(t *testing.T, in *instance, sock string, offline bool) *consoleProxy {
	t.Helper()
	mapFile := filepath.Join(t.TempDir(), "consoles.yaml")
	if err := os.WriteFile(mapFile, []byte("vms/vm1: unix:"+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)[0]
	args := []string{"vnc-proxy", "--bind-address", "127.0.0.1:" + itoa(port), "--backend", "map:" + mapFile,
		"--tls-cert-file", filepath.Join(in.dir, "serving.crt"), "--tls-private-key-file", filepath.Join(in.dir, "serving.key"),
		"--log-level", "debug"}
	if offline {
		args = append(args, "--issuer-kubeconfig", filepath.Join(in.dir, "admin.kubeconfig"), "--issuer", "https://portcullis.portcullis.svc")
	} else {
		args = append(args, "--webhook-kubeconfig", filepath.Join(in.dir, "webhook.kubeconfig"))
	}
	p := &consoleProxy{base: "https://127.0.0.1:" + itoa(port), proc: start(t, portcullisBin, args...)}
	c := in.httpClient(t)
	for range 400 {
		if resp, err := c.Get(p.base + "/console/vms/vm1"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.proc.done:
			t.Fatalf("vnc-proxy exited: %v\n%s", p.proc.err, p.proc.logs.String())
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Fatalf("vnc-proxy never served its console page:\n%s", p.proc.logs.String())
	return nil
}

// newBrowser starts headless Chromium trusting exactly the proxy's serving
// key (an SPKI pin: the test CA is not in Chromium's certificate store).
func newBrowser(t *testing.T, in *instance) context.Context {
	t.Helper()
	chromium := systemTool(t, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1024, 768),
		chromedp.Flag("ignore-certificate-errors-spki-list", servingSPKI(t, in)),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// servingSPKI is the base64 SHA-256 of the serving certificate's public key.
func servingSPKI(t *testing.T, in *instance) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(in.dir, "serving.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatal("serving.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// consolePage is one browser tab on a console page.
type consolePage struct {
	t   *testing.T
	ctx context.Context
}

// pageStatus is what the page shows: its state, the text, when the state
// changed (the browser's Date.now()) and the websocket close code.
type pageStatus struct {
	State     string `json:"state"`
	Text      string `json:"text"`
	Since     string `json:"since"`
	CloseCode string `json:"closeCode"`
}

const statusJS = `(() => { const s = document.getElementById('status');
  return s ? {state: s.dataset.state || '', text: s.textContent, since: s.dataset.since || '', closeCode: s.dataset.closeCode || ''} : {state: 'no page'}; })()`

// litPixelsJS counts the canvas pixels that are not (near) black: the
// SeaBIOS text.
const litPixelsJS = `(() => { const c = document.querySelector('#screen canvas');
  if (!c || !c.width || !c.height) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) { if (d[i] > 64 || d[i+1] > 64 || d[i+2] > 64) n++; }
  return n; })()`

// openConsole opens a console page URL in a new tab.
func openConsole(t *testing.T, browser context.Context, pageURL string) *consolePage {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("open the console page: %v", err)
	}
	return &consolePage{t: t, ctx: tab}
}

func (c *consolePage) status() pageStatus {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Evaluate[pageStatus](statusJS))
	if err != nil {
		c.t.Fatalf("read the page's status: %v", err)
	}
	return s
}

// waitState polls the page until it leaves the idle and connecting states
// and returns where it landed.
func (c *consolePage) waitState(within time.Duration) pageStatus {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := c.status()
		if s.State != "idle" && s.State != "connecting" {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the page stayed %q: %q", s.State, s.Text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDisconnected polls until the page shows its session ended, and
// returns the status with the browser's time of the close.
func (c *consolePage) waitDisconnected(within time.Duration) (pageStatus, time.Time) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := c.status()
		if s.State == "disconnected" {
			ms, err := strconv.ParseInt(s.Since, 10, 64)
			if err != nil {
				c.t.Fatalf("the page's close time %q: %v", s.Since, err)
			}
			return s, time.UnixMilli(ms)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the session is still %q: %q", s.State, s.Text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitScreen waits until the canvas shows the VM's screen, saves a
// screenshot of the page as a test artifact and returns the lit pixels.
func (c *consolePage) waitScreen(artifact string) int {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var lit int
	for {
		var err error
		if lit, err = chromedp.Run(c.ctx, chromedp.Evaluate[int](litPixelsJS)); err != nil {
			c.t.Fatalf("read the canvas: %v", err)
		}
		if lit > 200 {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the canvas stayed blank (%d lit pixels): %+v", lit, c.status())
		}
		time.Sleep(100 * time.Millisecond)
	}
	png, err := chromedp.Run(c.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(artifactDir(c.t), artifact)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Logf("the VM's screen: %d lit pixels on the canvas; screenshot %s", lit, path)
	return lit
}

// artifactDir is where tests keep what a person may want to look at
// ($PORTCULLIS_ARTIFACTS, or .e2e/artifacts at the repository's root).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PORTCULLIS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), ".e2e", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleURL runs `portcullis vnc vms/vm1 --open`: a new token for the VM,
// in the URL of its console page on p. It returns the URL and the token.
func consoleURL(t *testing.T, in *instance, p *consoleProxy, duration string) (string, string) {
	t.Helper()
	out, err := run(t, portcullisBin, "vnc", "vms/vm1", "--duration", duration, "--open", "--console-url", p.base,
		"--kubeconfig", filepath.Join(in.dir, "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	pageURL := strings.TrimSpace(out)
	page, token, ok := strings.Cut(pageURL, "#token=")
	if !ok || page != p.base+"/console/vms/vm1" {
		t.Fatalf("`portcullis vnc --open` printed %q", page)
	}
	return pageURL, token
}

// openConnected mints a token for vms/vm1 with `portcullis vnc --open`,
// opens its console page and waits until it is connected. It returns the
// page, its URL and the token.
func openConnected(t *testing.T, browser context.Context, in *instance, p *consoleProxy, duration string) (*consolePage, string, string) {
	t.Helper()
	pageURL, token := consoleURL(t, in, p, duration)
	page := openConsole(t, browser, pageURL)
	if s := page.waitState(30 * time.Second); s.State != "connected" {
		t.Fatalf("the console did not connect: %+v", s)
	}
	return page, pageURL, token
}

// timed runs a portcullis command and returns when it returned.
func timed(t *testing.T, args ...string) time.Time {
	t.Helper()
	if _, err := run(t, portcullisBin, args...); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// kidOf reads a token's key id.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	head, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func TestBrowserConsole(t *testing.T) {
	in := initInstance(t)
	in.serve(t, "--vnc-min-duration", "1s")
	admin := filepath.Join(in.dir, "admin.kubeconfig")
	sock := startQEMU(t)
	browser := newBrowser(t, in)
	var timings []string
	record := func(format string, args ...any) {
		t.Logf(format, args...)
		timings = append(timings, fmt.Sprintf(format, args...))
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(artifactDir(t), "console-timings.txt"), []byte(strings.Join(timings, "\n")+"\n"), 0o644)
	})

	for _, mode := range []string{"online", "offline"} {
		p := startConsoleProxy(t, in, sock, mode == "offline")

		t.Run(mode+"/revoked", func(t *testing.T) {
			page, _, _ := openConnected(t, browser, in, p, "1h")
			page.waitScreen("console-" + mode + ".png")
			if href, err := chromedp.Run(page.ctx, chromedp.Evaluate[string]("location.href")); err != nil || strings.Contains(href, "#") {
				t.Fatalf("the token's fragment is still in the address bar and history: %q %v", href, err)
			}
			started := time.Now()
			returned := timed(t, "vnc", "revoke", "vms/vm1", "--kubeconfig", admin)
			s, closed := page.waitDisconnected(10 * time.Second)
			if s.CloseCode != "1008" || !strings.Contains(s.Text, "revoked") {
				t.Fatalf("the page shows %+v, want close code 1008 and the revocation", s)
			}
			record("%s: the page's session closed %v after `portcullis vnc revoke` returned (%v after it started)",
				mode, closed.Sub(returned).Round(time.Millisecond), closed.Sub(started).Round(time.Millisecond))
			openConnected(t, browser, in, p, "1h") // a token minted after the revocation
		})

		t.Run(mode+"/expired", func(t *testing.T) {
			page, pageURL, _ := openConnected(t, browser, in, p, "8s")
			s, _ := page.waitDisconnected(30 * time.Second)
			if s.CloseCode != "1008" || !strings.Contains(s.Text, "expired") {
				t.Fatalf("the page shows %+v, want close code 1008 and the expiry", s)
			}
			// The same token, now expired, is refused at connect.
			late := openConsole(t, browser, pageURL)
			if s := late.waitState(30 * time.Second); s.State != "refused" {
				t.Fatalf("an expired token: the page shows %+v, want refused", s)
			}
		})

		t.Run(mode+"/key-retired", func(t *testing.T) {
			page, _, token := openConnected(t, browser, in, p, "1h")
			timed(t, "keys", "rotate", "--now", "--kubeconfig", admin)
			started := time.Now()
			returned := timed(t, "keys", "retire", kidOf(t, token), "--kubeconfig", admin)
			s, closed := page.waitDisconnected(30 * time.Second)
			if s.CloseCode != "1008" {
				t.Fatalf("the page shows %+v, want close code 1008", s)
			}
			record("%s: the page's session closed %v after `portcullis keys retire` returned (%v after it started)",
				mode, closed.Sub(returned).Round(time.Millisecond), closed.Sub(started).Round(time.Millisecond))
		})
	}
}
