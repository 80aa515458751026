package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/console"
	"portcullis.dev/portcullis/internal/testutil"
)

// proxyUnderTest is a running `portcullis vnc-proxy` in front of one VM,
// vms/vm1, checking tokens with h's Portcullis.
type proxyUnderTest struct {
	t     *testing.T
	h     *harness
	addr  string
	audit *testutil.Buffer
	// metrics is the plain-HTTP address of /metrics, /healthz and /readyz.
	metrics string
}

func startVNCProxy(t *testing.T, h *harness, offline bool, clk clock.WithTicker, configure ...func(*VNCProxyOptions)) *proxyUnderTest {
	t.Helper()
	mapFile := filepath.Join(t.TempDir(), "consoles.yaml")
	if err := os.WriteFile(mapFile, []byte("vms/vm1: tcp:"+testutil.StartRFBEcho(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := &VNCProxyOptions{}
	o.AddFlags(pflag.NewFlagSet("vnc-proxy", pflag.ContinueOnError)) // the defaults
	o.BindAddress, o.MetricsAddress, o.Backend = "127.0.0.1:0", "127.0.0.1:0", "map:"+mapFile
	o.CertFile, o.KeyFile = filepath.Join(h.dir, "serving.crt"), filepath.Join(h.dir, "serving.key")
	o.AllowedOrigins = []string{"https://console.example"}
	if offline {
		o.IssuerKubeconfig, o.Issuer = filepath.Join(h.dir, AdminKubeconfig), h.cfg.Issuer
	} else {
		o.WebhookKubeconfig = filepath.Join(h.dir, WebhookKubeconfig)
	}
	for _, c := range configure {
		c(o)
	}
	audit := &testutil.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := NewVNCProxy(ctx, o, slog.New(slog.DiscardHandler), slog.New(slog.NewJSONHandler(audit, nil)), clk)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &proxyUnderTest{t: t, h: h, addr: p.Addr().String(), audit: audit, metrics: p.MetricsAddr().String()}
}

// get fetches path from the proxy's plain-HTTP metrics listener.
func (p *proxyUnderTest) get(path string) string {
	p.t.Helper()
	resp, err := http.Get("http://" + p.metrics + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

// waitMetrics polls /metrics until it has every line in want.
func (p *proxyUnderTest) waitMetrics(want ...string) {
	p.t.Helper()
	var text string
	for range 400 {
		text = p.get("/metrics")
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(text, w)
		}
		if !missing {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.t.Fatalf("/metrics never had %q:\n%s", want, text)
}

// waitReady waits until /readyz answers 200 (offline: the revocations
// were listed).
func (p *proxyUnderTest) waitReady() {
	p.t.Helper()
	for range 400 {
		resp, err := http.Get("http://" + p.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	p.t.Fatal("vnc-proxy never became ready")
}

// dial opens /vnc/vms/<vm> with the token in the Authorization header, or
// (asBrowser) in the bearer subprotocol with an Origin header.
func (p *proxyUnderTest) dial(vm, token, query string, header http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: p.h.caPool()}, Subprotocols: []string{console.DataProtocol}, HandshakeTimeout: 10 * time.Second}
	if header == nil {
		header = http.Header{}
	}
	if token != "" && header.Get("Origin") == "" {
		header.Set("Authorization", "Bearer "+token)
	} else if token != "" {
		d.Subprotocols = append(d.Subprotocols, console.BearerProtocolPrefix+base64.RawURLEncoding.EncodeToString([]byte(token)))
	}
	return d.Dial("wss://"+p.addr+"/vnc/vms/"+vm+query, header)
}

// open dials and checks the VM's console answers through the session.
func (p *proxyUnderTest) open(token string, header http.Header) *websocket.Conn {
	p.t.Helper()
	var ws *websocket.Conn
	var resp *http.Response
	var err error
	// 503 until the offline verifier listed the revocations once.
	for range 100 {
		if ws, resp, err = p.dial("vm1", token, "", header); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("dial: %v (%s)", err, status(resp))
	}
	p.t.Cleanup(func() { ws.Close() })
	if ws.Subprotocol() != console.DataProtocol {
		p.t.Fatalf("subprotocol %q, want %q (the bearer one is never echoed)", ws.Subprotocol(), console.DataProtocol)
	}
	if got := readBinary(p.t, ws); got != testutil.RFBBanner {
		p.t.Fatalf("first bytes %q, want the RFB banner", got)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("ping")); err != nil {
		p.t.Fatal(err)
	}
	if got := readBinary(p.t, ws); got != "ping" {
		p.t.Fatalf("echo %q", got)
	}
	return ws
}

func readBinary(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, data, err := ws.ReadMessage()
	if err != nil || kind != websocket.BinaryMessage {
		t.Fatalf("read: %d %v", kind, err)
	}
	return string(data)
}

// waitClosed reads until the session's close frame and returns it and how
// long it took to come.
func waitClosed(t *testing.T, ws *websocket.Conn) (*websocket.CloseError, time.Duration) {
	t.Helper()
	start := time.Now()
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("the session ended without a close frame: %v", err)
			}
			return ce, time.Since(start)
		}
	}
}

func status(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
}

func (h *harness) revokeVM(vm string) {
	h.t.Helper()
	o := &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}}
	if err := RunVNC(context.Background(), o, []string{"revoke", "vms/" + vm}, io.Discard); err != nil {
		h.t.Fatal(err)
	}
}

// TestVNCProxySessionsFollowTheirToken: a console opened through the proxy
// relays the VM's bytes, and ends with a close frame saying why when its
// VM's tokens are revoked; online and offline.
func TestVNCProxySessionsFollowTheirToken(t *testing.T) {
	for _, mode := range []string{"online", "offline"} {
		t.Run(mode, func(t *testing.T) {
			h := startServer(t, nil)
			p := startVNCProxy(t, h, mode == "offline", clock.RealClock{})
			p.waitReady()
			_, token, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
			header := p.open(token, nil)
			browser := p.open(token, http.Header{"Origin": {"https://console.example"}})

			h.revokeVM("vm1")
			for name, ws := range map[string]*websocket.Conn{"header": header, "subprotocol": browser} {
				ce, took := waitClosed(t, ws)
				if ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "revoked") {
					t.Fatalf("%s session closed with %d %q, want %d and the reason", name, ce.Code, ce.Text, websocket.ClosePolicyViolation)
				}
				t.Logf("%s: the session closed %v after the revocation returned", name, took.Round(time.Millisecond))
			}
			if _, resp, err := p.dial("vm1", token, "", nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("a revoked token opened a console: %v (%s)", err, status(resp))
			}
			if !strings.Contains(p.audit.String(), `"msg":"vnc-session-ended"`) || !strings.Contains(p.audit.String(), `"reason":"token_refused"`) {
				t.Fatalf("no audit line for the session ended by revocation:\n%s", p.audit)
			}
			// A session is counted as ended once both its relays stopped,
			// which may be after its client read the close frame.
			p.waitMetrics("portcullis_vnc_proxy_sessions_opened_total 2", `portcullis_vnc_proxy_sessions_ended_total{reason="token_refused"} 2`)
		})
	}
}

// TestVNCProxyRefusals: what must not open a console, and the answer each gets.
func TestVNCProxyRefusals(t *testing.T) {
	h := startServer(t, nil)
	p := startVNCProxy(t, h, false, clock.RealClock{})
	_, vm1, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	_, vm2, _ := h.vncGet(adminBase, "vm2", "?duration=1h")
	apiToken := h.mint("ns", "sa", 3600).Status.Token // a ServiceAccount token: not the VNC audience
	for _, tc := range []struct {
		name   string
		vm     string
		token  string
		query  string
		header http.Header
		code   int
	}{
		{"another VM's token", "vm1", vm2, "", nil, http.StatusForbidden},
		{"an API token", "vm1", apiToken, "", nil, http.StatusUnauthorized},
		{"no token", "vm1", "", "", nil, http.StatusUnauthorized},
		{"a token in the query", "vm1", "", "?token=" + vm1, nil, http.StatusBadRequest},
		{"a token in the query beside a good one", "vm1", vm1, "?access_token=" + vm1, nil, http.StatusBadRequest},
		{"a foreign origin", "vm1", vm1, "", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"a plain-http origin of the proxy's host", "vm1", vm1, "", http.Header{"Origin": {"http://" + p.addr}}, http.StatusForbidden},
		{"a VM without a console here", "vm2", vm2, "", nil, http.StatusNotFound},
		{"a tampered token", "vm1", vm1[:len(vm1)-4] + "AAAA", "", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, resp, err := p.dial(tc.vm, tc.token, tc.query, tc.header)
			if err == nil {
				ws.Close()
				t.Fatal("a console opened")
			}
			if resp == nil || resp.StatusCode != tc.code {
				t.Fatalf("%v (%s), want %d", err, status(resp), tc.code)
			}
		})
	}
	// The proxy's own origin (its console page) is allowed.
	p.open(vm1, http.Header{"Origin": {"https://" + p.addr}})
}

// TestVNCProxyExpiry: a session ends at its token's expiry, and an expired
// token opens nothing (offline, on the proxy's clock, which the test moves).
func TestVNCProxyExpiry(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.VNC.MinDuration = metav1.Duration{Duration: time.Minute} })
	clk := testingclock.NewFakeClock(time.Now())
	p := startVNCProxy(t, h, true, clk)
	_, token, expires := h.vncGet(adminBase, "vm1", "?duration=1m")
	exp, err := time.Parse(time.RFC3339, expires)
	if err != nil {
		t.Fatal(err)
	}
	ws := p.open(token, nil)
	clk.SetTime(exp.Add(time.Second))
	if ce, _ := waitClosed(t, ws); ce.Code != websocket.ClosePolicyViolation || ce.Text != "token expired" {
		t.Fatalf("closed with %d %q, want %d \"token expired\"", ce.Code, ce.Text, websocket.ClosePolicyViolation)
	}
	// Within the verifier's leeway for clock skew, but past exp on the
	// proxy's clock, where the session above ended: refused.
	if _, resp, err := p.dial("vm1", token, "", nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an expired token: %v (%s)", err, status(resp))
	}
}

// TestVNCProxySessionEndsWhenItsKeyIsRetired: retiring the key that signed
// a session's token ends the session (online).
func TestVNCProxySessionEndsWhenItsKeyIsRetired(t *testing.T) {
	h := startServer(t, nil)
	p := startVNCProxy(t, h, false, clock.RealClock{})
	_, token, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	ws := p.open(token, nil)
	h.keysCLI("rotate", "--now")
	h.keysCLI("retire", kidOf(t, token))
	ce, took := waitClosed(t, ws)
	if ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, websocket.ClosePolicyViolation)
	}
	t.Logf("the session closed %v after the retirement returned", took.Round(time.Millisecond))
}

// TestVNCProxyOptionsValidate: the backend and verifier flags that make a
// proxy, and the ones that do not.
func TestVNCProxyOptionsValidate(t *testing.T) {
	base := func() *VNCProxyOptions {
		o := &VNCProxyOptions{}
		o.AddFlags(pflag.NewFlagSet("vnc-proxy", pflag.ContinueOnError))
		o.CertFile, o.KeyFile, o.WebhookKubeconfig = "tls.crt", "tls.key", "webhook.kubeconfig"
		return o
	}
	for _, tc := range []struct {
		name    string
		change  func(*VNCProxyOptions)
		wantErr string
	}{
		{"map backend", func(o *VNCProxyOptions) { o.Backend = "map:consoles.yaml" }, ""},
		{"kubevirt backend, in cluster", func(o *VNCProxyOptions) { o.Backend = "kubevirt" }, ""},
		{"kubevirt backend, kubeconfig", func(o *VNCProxyOptions) { o.Backend, o.KubeVirtKubeconfig = "kubevirt", "proxy.kubeconfig" }, ""},
		{"no backend", func(o *VNCProxyOptions) {}, "--backend"},
		{"map without a file", func(o *VNCProxyOptions) { o.Backend = "map:" }, "--backend"},
		{"unknown backend", func(o *VNCProxyOptions) { o.Backend = "libvirt" }, "--backend"},
		{"kubevirt kubeconfig with the map backend", func(o *VNCProxyOptions) { o.Backend, o.KubeVirtKubeconfig = "map:c.yaml", "k" }, "--kubevirt-kubeconfig"},
		{"online, claiming at the issuer", func(o *VNCProxyOptions) { o.Backend, o.IssuerKubeconfig = "kubevirt", "i" }, ""},
		{"no verifier", func(o *VNCProxyOptions) { o.Backend, o.WebhookKubeconfig = "kubevirt", "" }, "--webhook-kubeconfig"},
		{"offline without --issuer", func(o *VNCProxyOptions) { o.Backend, o.WebhookKubeconfig, o.IssuerKubeconfig = "kubevirt", "", "i" }, "--issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.change(o)
			err := o.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

// claimTokenClaim creates a TokenClaim at the issuer as the admin and
// returns the HTTP status.
func (h *harness) claimTokenClaim(token, query string) int {
	h.t.Helper()
	body := `{"apiVersion":"portcullis.dev/v1alpha1","kind":"TokenClaim","spec":{"token":"` + token + `"}}`
	resp, err := h.adminHTTP().Post(h.issuerURL("/apis/portcullis.dev/v1alpha1/tokenclaims"+query), "application/json", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(answer), token) {
		h.t.Fatalf("the TokenClaim answer echoes the token: %s", answer)
	}
	return resp.StatusCode
}

// TestVNCProxySingleUse: a single-use token opens one session across
// proxies (the claim is at the issuer, not in a proxy); other tokens open
// many; a proxy that cannot claim refuses single-use tokens.
func TestVNCProxySingleUse(t *testing.T) {
	h := startServer(t, nil)
	claimAtIssuer := func(o *VNCProxyOptions) { o.IssuerKubeconfig = filepath.Join(h.dir, AdminKubeconfig) }
	online := startVNCProxy(t, h, false, clock.RealClock{}, claimAtIssuer)
	offline := startVNCProxy(t, h, true, clock.RealClock{})
	offline.waitReady()
	cannotClaim := startVNCProxy(t, h, false, clock.RealClock{})

	if code, _, msg := h.vncGet(adminBase, "vm1", "?singleUse=maybe"); code != http.StatusBadRequest {
		t.Fatalf("singleUse=maybe: %d %s, want 400", code, msg)
	}
	var minted strings.Builder
	o := &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, Duration: "1h", SingleUse: true}
	if err := RunVNC(context.Background(), o, []string{"vms/vm1"}, &minted); err != nil {
		t.Fatal(err)
	}
	once := h.remember(strings.TrimSpace(minted.String()))
	if _, resp, err := cannotClaim.dial("vm1", once, "", nil); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a proxy without the issuer API took a single-use token: %v (%s)", err, status(resp))
	}
	session := online.open(once, nil)
	for name, p := range map[string]*proxyUnderTest{"the other proxy": offline, "the same proxy": online} {
		_, resp, err := p.dial("vm1", once, "", nil)
		if err == nil || resp.StatusCode != http.StatusUnauthorized || !strings.Contains(status(resp), "already opened a session") {
			t.Fatalf("%s: a used single-use token: %v (%s), want 401", name, err, status(resp))
		}
	}
	// The one session lives on, and follows its token like any other.
	if err := session.WriteMessage(websocket.BinaryMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readBinary(t, session); got != "still here" {
		t.Fatalf("the single-use session: %q", got)
	}
	_, many, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	online.open(many, nil)
	offline.open(many, nil)
	online.open(many, nil)
	h.revokeVM("vm1")
	if ce, _ := waitClosed(t, session); ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("the single-use session after revocation: %d %q", ce.Code, ce.Text)
	}

	// The TokenClaim API itself, with good tokens of a VM not revoked.
	_, fresh, _ := h.vncGet(adminBase, "vm2", "?duration=1h&singleUse=true")
	_, reusable, _ := h.vncGet(adminBase, "vm2", "?duration=1h")
	for _, tc := range []struct {
		name, token, query string
		code               int
	}{
		{"a token that is not single-use", reusable, "", http.StatusUnprocessableEntity},
		{"not a token", "x.y.z", "", http.StatusUnprocessableEntity},
		{"a dry run", fresh, "?dryRun=All", http.StatusCreated},
		{"the first claim (the dry run recorded nothing)", fresh, "", http.StatusCreated},
		{"the second claim", fresh, "", http.StatusConflict},
	} {
		if code := h.claimTokenClaim(tc.token, tc.query); code != tc.code {
			t.Fatalf("%s: %d, want %d", tc.name, code, tc.code)
		}
	}
	// Standalone, only the admin groups may claim (cluster-connected: RBAC,
	// create on tokenclaims.portcullis.dev).
	h.writeCert("alice", "alice", "developers")
	_, other, _ := h.vncGet(adminBase, "vm2", "?duration=1h&singleUse=true")
	resp, err := h.httpClient("alice").Post(h.issuerURL("/apis/portcullis.dev/v1alpha1/tokenclaims"), "application/json",
		strings.NewReader(`{"apiVersion":"portcullis.dev/v1alpha1","kind":"TokenClaim","spec":{"token":"`+other+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a non-admin claimed a token: %d, want 403", resp.StatusCode)
	}
}
