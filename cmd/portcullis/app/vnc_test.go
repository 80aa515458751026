package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/config"
)

const vncPath = "/apis/token.kubevirt.io/v1/namespaces/vms/virtualmachines/"

func (h *harness) vncGet(certBase, vm, query string) (int, string, string) {
	h.t.Helper()
	resp, err := h.httpClient(certBase).Get(h.issuerURL(vncPath + vm + "/vnc" + query))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var answer struct {
		Token               string `json:"token"`
		ExpirationTimestamp string `json:"expirationTimestamp"`
		Message             string `json:"message"`
	}
	json.Unmarshal(body, &answer)
	h.remember(answer.Token)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, "", answer.Message
	}
	return resp.StatusCode, answer.Token, answer.ExpirationTimestamp
}

func TestVNCDurations(t *testing.T) {
	h := startServer(t, nil)
	for _, tc := range []struct {
		duration string
		code     int
		lifetime time.Duration // for 200
		message  string        // for 400
	}{
		{"", 200, 10 * time.Minute, ""},
		{"10m", 200, 10 * time.Minute, ""},
		{"9m59s", 400, 0, `duration "9m59s" is too short: the minimum is 10m0s`},
		{"1h30m", 200, 90 * time.Minute, ""},
		{"2h45m", 200, 165 * time.Minute, ""},
		{"-1h", 400, 0, `duration "-1h" is too short`},
		{"abc", 400, 0, `failed to parse duration "abc"`},
		{"300ms", 400, 0, `duration "300ms" is too short`},
		{"2000000h", 400, 0, `duration "2000000h" is too long: the maximum is 2^32 seconds`},
		{"1000000000h", 400, 0, `failed to parse duration "1000000000h"`},
	} {
		t.Run("duration="+tc.duration, func(t *testing.T) {
			query := ""
			if tc.duration != "" {
				query = "?duration=" + tc.duration
			}
			code, token, detail := h.vncGet(adminBase, "vm1", query)
			if code != tc.code {
				t.Fatalf("status %d (%s), want %d", code, detail, tc.code)
			}
			if code == 200 {
				exp, err := time.Parse(time.RFC3339, detail)
				if err != nil || strings.Count(token, ".") != 2 {
					t.Fatalf("answer token %q expirationTimestamp %q", token, detail)
				}
				if d := time.Until(exp); d < tc.lifetime-time.Minute || d > tc.lifetime {
					t.Fatalf("expires in %v, want about %v", d, tc.lifetime)
				}
				return
			}
			if !strings.Contains(detail, tc.message) {
				t.Fatalf("message %q, want it to contain %q", detail, tc.message)
			}
		})
	}
}

func TestVNCIdentityRevocationAndAuthorization(t *testing.T) {
	h := startServer(t, nil)
	ctx := context.Background()
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	review := func(token string, aud string) (bool, map[string][]string, string) {
		t.Helper()
		resp, ok, err := wh.AuthenticateToken(authenticator.WithAudiences(ctx, authenticator.Audiences{aud}), token)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false, nil, ""
		}
		return true, resp.User.GetExtra(), resp.User.GetName()
	}
	_, vm1, _ := h.vncGet(adminBase, "vm1", "")
	_, vm2, _ := h.vncGet(adminBase, "vm2", "")

	for _, aud := range []string{h.cfg.VNC.Audience, h.cfg.APIAudiences[0]} {
		ok, extra, name := review(vm1, aud)
		if !ok || name != "system:serviceaccount:vms:vm1-vnc-access" {
			t.Fatalf("audience %s: authenticated %v as %q", aud, ok, name)
		}
		if !slices.Equal(extra["token.kubevirt.io/vm-namespace"], []string{"vms"}) || !slices.Equal(extra["token.kubevirt.io/vm-name"], []string{"vm1"}) {
			t.Fatalf("extras %v do not name the VM", extra)
		}
	}
	if ok, _, _ := review(vm1, "https://somewhere.else"); ok {
		t.Fatal("a VNC token authenticated for a foreign audience")
	}

	var out strings.Builder
	o := &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}}
	if err := RunVNC(ctx, o, []string{"revoke", "vms/vm1"}, &out); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := review(vm1, h.cfg.VNC.Audience); ok {
		t.Fatal("a token of the revoked VM still authenticates")
	}
	if ok, _, _ := review(vm2, h.cfg.VNC.Audience); !ok {
		t.Fatal("revoking vm1 refused vm2's token")
	}
	out.Reset()
	o.Duration = "1h"
	if err := RunVNC(ctx, o, []string{"vms/vm1"}, &out); err != nil {
		t.Fatal(err)
	}
	fresh := h.remember(strings.TrimSpace(out.String()))
	if ok, _, _ := review(fresh, h.cfg.VNC.Audience); !ok {
		t.Fatal("a token minted after the revocation is refused")
	}

	// --open prints the console page's URL with the token in the fragment.
	out.Reset()
	o.Open, o.ConsoleURL = true, "https://console.example:8443/"
	if err := RunVNC(ctx, o, []string{"vms/vm1"}, &out); err != nil {
		t.Fatal(err)
	}
	page, token, ok := strings.Cut(strings.TrimSpace(out.String()), "#token=")
	if !ok || page != "https://console.example:8443/console/vms/vm1" {
		t.Fatalf("--open printed %q", page)
	}
	if ok, _, _ := review(h.remember(token), h.cfg.VNC.Audience); !ok {
		t.Fatal("the token in the console URL does not authenticate")
	}
	for _, bad := range []string{"", "http://console.example", "console.example:8443", "https://console.example/?x=1"} {
		o.ConsoleURL = bad
		if err := RunVNC(ctx, o, []string{"vms/vm1"}, io.Discard); err == nil {
			t.Fatalf("--open with --console-url %q: no error", bad)
		}
	}
	o.Open = false

	h.writeCert("alice", "alice", "developers")
	if code, _, _ := h.vncGet("alice", "vm1", ""); code != http.StatusForbidden {
		t.Fatalf("non-admin standalone: %d, want 403", code)
	}

	resp, err := h.adminHTTP().Get(h.issuerURL("/apis/token.kubevirt.io/v1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"name":"virtualmachines/vnc"`) {
		t.Fatalf("discovery does not list virtualmachines/vnc: %s", body)
	}
}

func TestVNCProxyAndVerify(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.VNC.MinDuration = metav1.Duration{Duration: time.Second} })
	ctx := context.Background()
	webhookKubeconfig := filepath.Join(h.dir, WebhookKubeconfig)
	checker, err := vncproxy.New(vncproxy.Config{WebhookKubeconfig: webhookKubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()
	verify := func(vm, token string) (string, error) {
		var out strings.Builder
		err := RunVerify(ctx, &VerifyOptions{WebhookKubeconfig: webhookKubeconfig, VM: vm, Audience: "token.kubevirt.io/vnc"}, token, &out)
		return strings.TrimSpace(out.String()), err
	}

	_, good, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	if err := checker.Check(ctx, good, "vms", "vm1"); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if err := checker.Check(ctx, good, "vms", "vm1"); err != nil {
		t.Fatalf("good token, cached: %v", err)
	}
	if err := checker.Check(ctx, good, "vms", "vm2"); !errors.Is(err, vncproxy.ErrOtherVM) {
		t.Fatalf("token for another VM: %v, want ErrOtherVM", err)
	}
	if out, err := verify("vms/vm1", good); err != nil || out != "ok: the token opens the VNC console of vms/vm1" {
		t.Fatalf("verify good: %q %v", out, err)
	}
	if out, err := verify("vms/vm2", good); !errors.Is(err, ErrRefused) || out != "refused: token is for another VM" {
		t.Fatalf("verify other VM: %q %v", out, err)
	}

	// Revoked (never checked before, so not cached).
	_, revoked, _ := h.vncGet(adminBase, "vm3", "?duration=1h")
	if err := RunVNC(ctx, &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}}, []string{"revoke", "vms/vm3"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := checker.Check(ctx, revoked, "vms", "vm3"); !errors.Is(err, vncproxy.ErrNotAuthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
	if out, err := verify("vms/vm3", revoked); !errors.Is(err, ErrRefused) || !strings.HasPrefix(out, "refused: token is not authenticated") {
		t.Fatalf("verify revoked: %q %v", out, err)
	}

	// Expired: a 1s token (the minimum was lowered for this test).
	_, short, _ := h.vncGet(adminBase, "vm4", "?duration=1s")
	time.Sleep(1100 * time.Millisecond)
	if err := checker.Check(ctx, short, "vms", "vm4"); !errors.Is(err, vncproxy.ErrNotAuthenticated) {
		t.Fatalf("expired token: %v", err)
	}
	// A user's API token is no VNC token.
	h.writeCert("alice", "alice")
	_, apiToken := h.createToken("alice", nil)
	if err := checker.Check(ctx, apiToken, "vms", "vm1"); !errors.Is(err, vncproxy.ErrNotAuthenticated) {
		t.Fatalf("API token at the VNC proxy: %v", err)
	}
}

func TestVNCOfflineVerification(t *testing.T) {
	h := startServer(t, func(c *config.Config) {
		c.KeyRotation.PropagationDelay = metav1.Duration{Duration: 2 * time.Second} // JWKS max-age 1s
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	offline, err := vncproxy.NewOffline(ctx, vncproxy.OfflineConfig{Issuer: h.restConfig(AdminKubeconfig), Iss: h.cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	// eventually polls a check until it gives want, bounded in count.
	eventually := func(what string, check func() error, want error) time.Duration {
		t.Helper()
		start := time.Now()
		var err error
		for range 200 {
			if err = check(); errors.Is(err, want) || (want == nil && err == nil) {
				return time.Since(start)
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("%s: %v, want %v", what, err, want)
		return 0
	}
	_, vm1, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	_, vm2, _ := h.vncGet(adminBase, "vm2", "?duration=1h")
	eventually("synced and good", func() error { return offline.Check(ctx, vm1, "vms", "vm1") }, nil)
	if err := offline.Check(ctx, vm1, "vms", "vm2"); !errors.Is(err, vncproxy.ErrOtherVM) {
		t.Fatalf("other VM: %v", err)
	}
	h.writeCert("alice", "alice")
	_, apiToken := h.createToken("alice", nil)
	if err := offline.Check(ctx, apiToken, "vms", "vm1"); !errors.Is(err, vncproxy.ErrNotAuthenticated) {
		t.Fatalf("an API token offline: %v", err)
	}

	// Revoking the VM reaches the offline verifier through the watch.
	if err := RunVNC(ctx, &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}}, []string{"revoke", "vms/vm1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	took := eventually("revoked VM", func() error { return offline.Check(ctx, vm1, "vms", "vm1") }, vncproxy.ErrNotAuthenticated)
	t.Logf("the offline verifier refused the revoked VM's token %v after the revocation returned", took.Round(time.Millisecond))
	if err := offline.Check(ctx, vm2, "vms", "vm2"); err != nil {
		t.Fatalf("another VM's token after the revocation: %v", err)
	}
	_, fresh, _ := h.vncGet(adminBase, "vm1", "?duration=1h")
	if err := offline.Check(ctx, fresh, "vms", "vm1"); err != nil {
		t.Fatalf("a token minted after the revocation: %v", err)
	}

	// A retired key drops out of the JWKS: refused once the cache refreshes.
	h.keysCLI("rotate", "--now")
	old := kidOf(t, vm2)
	h.keysCLI("retire", old)
	took = eventually("retired key", func() error { return offline.Check(ctx, vm2, "vms", "vm2") }, vncproxy.ErrNotAuthenticated)
	t.Logf("the offline verifier refused a retired key's token %v after the retirement", took.Round(time.Millisecond))
}
