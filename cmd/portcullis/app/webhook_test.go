package app

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"

	"portcullis.dev/portcullis/keys"
)

// kubeAPIServerAuthenticator builds the token authenticator exactly as
// kube-apiserver does from --authentication-token-webhook-config-file and
// --authentication-token-webhook-version.
func kubeAPIServerAuthenticator(t *testing.T, h *harness, version string) *webhook.WebhookTokenAuthenticator {
	t.Helper()
	cfg, err := webhookutil.LoadKubeconfig(filepath.Join(h.dir, WebhookKubeconfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	// One try: the tests want the first answer, not kube-apiserver's retries.
	wh, err := webhook.New(cfg, version, authenticator.Audiences(h.cfg.APIAudiences), wait.Backoff{Steps: 1, Duration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func TestWebhookClientAuthenticatesAndRevokes(t *testing.T) {
	h := startServer(t, nil)
	for _, version := range []string{"v1", "v1beta1"} {
		t.Run(version, func(t *testing.T) {
			wh := kubeAPIServerAuthenticator(t, h, version)
			ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences(h.cfg.APIAudiences))
			tr := h.mint("team-a", "builder-"+version, 3600)
			resp, ok, err := wh.AuthenticateToken(ctx, tr.Status.Token)
			if err != nil || !ok {
				t.Fatalf("AuthenticateToken = %v, %v; want authenticated", ok, err)
			}
			u := resp.User
			if want := "system:serviceaccount:team-a:builder-" + version; u.GetName() != want {
				t.Fatalf("user = %q, want %q", u.GetName(), want)
			}
			if !slices.Equal(u.GetGroups(), []string{"system:serviceaccounts", "system:serviceaccounts:team-a"}) {
				t.Fatalf("groups = %v", u.GetGroups())
			}
			jti := u.GetExtra()["authentication.kubernetes.io/credential-id"]
			if len(jti) != 1 || !strings.HasPrefix(jti[0], "JTI=") {
				t.Fatalf("credential-id extra = %v", jti)
			}

			// Revoke through the API; this replica refuses at once.
			err = RunRevoke(context.Background(), &RevokeOptions{
				ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)},
				JTI:           strings.TrimPrefix(jti[0], "JTI="), Reason: "test",
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := wh.AuthenticateToken(ctx, tr.Status.Token); ok || err != nil {
				t.Fatalf("after revocation: authenticated %v, err %v; want a clean no", ok, err)
			}

			// A subject revocation kills the subject's tokens minted up to it.
			other := h.mint("team-a", "deployer-"+version, 3600)
			if _, ok, _ := wh.AuthenticateToken(ctx, other.Status.Token); !ok {
				t.Fatal("second token not authenticated")
			}
			err = RunRevoke(context.Background(), &RevokeOptions{
				ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)},
				Subject:       "system:serviceaccount:team-a:deployer-" + version,
			}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := wh.AuthenticateToken(ctx, other.Status.Token); ok || err != nil {
				t.Fatalf("after subject revocation: authenticated %v, err %v", ok, err)
			}
		})
	}
}

func TestWebhookRefusesWrongAudience(t *testing.T) {
	h := startServer(t, nil)
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	tr := h.mint("ns", "sa", 3600, "https://vault.example")
	ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences(h.cfg.APIAudiences))
	if _, ok, err := wh.AuthenticateToken(ctx, tr.Status.Token); ok || err != nil {
		t.Fatalf("token for another audience: authenticated %v, err %v", ok, err)
	}
	ctx = authenticator.WithAudiences(context.Background(), authenticator.Audiences{"https://vault.example"})
	resp, ok, err := wh.AuthenticateToken(ctx, tr.Status.Token)
	if err != nil || !ok || !slices.Equal(resp.Audiences, authenticator.Audiences{"https://vault.example"}) {
		t.Fatalf("token for its own audience: %v, %v, %+v", ok, err, resp)
	}
}

// reviewAnswer is what the hostile table reads from an answer.
type reviewAnswer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Status     struct {
		Authenticated bool   `json:"authenticated"`
		Error         string `json:"error"`
	} `json:"status"`
}

// TestWebhookHostileInputs checks the shape of every answer over raw HTTPS:
// refusals in the request's version with an empty error, malformed requests
// as Status errors, and the TLS boundary. Which check refuses which forgery
// is TestHostileTableThroughKubeAPIServerClient's job.
func TestWebhookHostileInputs(t *testing.T) {
	h := startServer(t, nil)
	client := h.httpClient(webhookClientBase)
	good := h.mint("ns", "sa", 3600).Status.Token
	parts := strings.Split(good, ".")
	now := time.Now()

	ring, err := keys.LoadDir(h.cfg.KeysDir)
	if err != nil {
		t.Fatal(err)
	}
	key := ring[0]
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": h.cfg.Issuer, "sub": "system:serviceaccount:ns:sa", "aud": h.cfg.APIAudiences,
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "forged-jti"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(alg jwa.SignatureAlgorithm, k any, c map[string]any) string {
		payload, _ := json.Marshal(c)
		hdr := jws.NewHeaders()
		hdr.Set(jws.KeyIDKey, key.ID)
		out, err := jws.Sign(payload, jws.WithKey(alg, k, jws.WithProtectedHeaders(hdr)))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	pubJSON, _ := json.Marshal(key.Public())
	tampered := []byte(parts[2])
	tampered[3] ^= 1

	// Revoked jti and revoked subject, through the API.
	revokedJTI := h.mint("ns", "revoked-jti", 3600)
	revokedSubject := h.mint("ns", "revoked-subject", 3600)
	for _, o := range []*RevokeOptions{
		{JTI: jtiOf(t, revokedJTI.Status.Token)},
		{Subject: "system:serviceaccount:ns:revoked-subject"},
	} {
		o.Kubeconfig = filepath.Join(h.dir, AdminKubeconfig)
		if err := RunRevoke(context.Background(), o, io.Discard); err != nil {
			t.Fatal(err)
		}
	}

	review := func(version, token string, auds []string) string {
		b, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/" + version, "kind": "TokenReview",
			"spec": map[string]any{"token": token, "audiences": auds}})
		return string(b)
	}
	badToken := []struct {
		name  string
		token string
		auds  []string
	}{
		{"empty token", "", nil},
		{"token over 16 KiB", strings.Repeat("x", 16<<10+1), nil},
		{"alg none", enc(map[string]any{"alg": "none", "kid": key.ID}) + "." + enc(claims(nil)) + ".", nil},
		{"HS256 signed with the public key", sign(jwa.HS256, pubJSON, claims(nil)), nil},
		{"unknown kid", enc(map[string]any{"alg": "ES256", "kid": "no-such-key"}) + "." + parts[1] + "." + parts[2], nil},
		{"wrong audience", good, []string{"https://other.example"}},
		{"tampered payload", parts[0] + "." + enc(claims(nil)) + "." + parts[2], nil},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(tampered), nil},
		{"revoked jti", revokedJTI.Status.Token, nil},
		{"revoked subject", revokedSubject.Status.Token, nil},
		{"record missing (forged with the real key)", sign(jwa.ES256, key.Private(), claims(nil)), nil},
	}
	for _, version := range []string{"v1", "v1beta1"} {
		for _, tc := range badToken {
			t.Run(version+"/"+tc.name, func(t *testing.T) {
				code, body := post(t, client, h.webhookURL(), review(version, tc.token, tc.auds))
				if code != http.StatusOK {
					t.Fatalf("status %d, want 200 (body %s)", code, body)
				}
				var a reviewAnswer
				if err := json.Unmarshal([]byte(body), &a); err != nil {
					t.Fatal(err)
				}
				if a.APIVersion != "authentication.k8s.io/"+version || a.Kind != "TokenReview" {
					t.Fatalf("answered as %s %s, want the request's version", a.APIVersion, a.Kind)
				}
				if a.Status.Authenticated || a.Status.Error != "" {
					t.Fatalf("status = %+v, want authenticated false and an empty error", a.Status)
				}
			})
		}
	}

	malformed := []struct {
		name string
		body string
		want int
	}{
		{"malformed JSON", `{"apiVersion":`, http.StatusBadRequest},
		{"not an object", `"hello"`, http.StatusBadRequest},
		{"wrong kind", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"token":"x"}}`, http.StatusBadRequest},
		{"wrong apiVersion", `{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"x"}}`, http.StatusBadRequest},
		{"no apiVersion", `{"kind":"TokenReview","spec":{"token":"x"}}`, http.StatusBadRequest},
		{"body over the limit", review("v1", strings.Repeat("x", 128<<10), nil), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, client, h.webhookURL(), tc.body)
			if code != tc.want {
				t.Fatalf("status %d, want %d (body %s)", code, tc.want, body)
			}
			var st struct{ Kind, Status string }
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" || st.Status != "Failure" {
				t.Fatalf("body %q is not a failure Status", body)
			}
		})
	}

	t.Run("GET is not allowed", func(t *testing.T) {
		resp, err := client.Get(h.webhookURL())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d, want 405", resp.StatusCode)
		}
	})

	for name, certBase := range map[string]string{"caller without a client certificate": "", "client certificate not allowed (admin)": adminBase} {
		t.Run(name, func(t *testing.T) {
			c := h.httpClient(certBase)
			resp, err := c.Post(h.webhookURL(), "application/json", strings.NewReader(review("v1", good, nil)))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %d; want the TLS handshake refused", resp.StatusCode)
			}
		})
	}

	t.Run("client certificate from another CA", func(t *testing.T) {
		other := initDir(t)
		cert, err := tls.LoadX509KeyPair(filepath.Join(other, webhookClientBase+".crt"), filepath.Join(other, webhookClientBase+".key"))
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.caPool(), Certificates: []tls.Certificate{cert}}}}
		resp, err := c.Post(h.webhookURL(), "application/json", strings.NewReader(review("v1", good, nil)))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d; want the TLS handshake refused", resp.StatusCode)
		}
	})

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		cert, _ := tls.LoadX509KeyPair(filepath.Join(h.dir, webhookClientBase+".crt"), filepath.Join(h.dir, webhookClientBase+".key"))
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.caPool(), Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS11}}}
		if resp, err := c.Post(h.webhookURL(), "application/json", strings.NewReader(review("v1", good, nil))); err == nil {
			resp.Body.Close()
			t.Fatal("a TLS 1.1 connection was served")
		}
	})
}

func post(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// jtiOf reads the jti claim of a token (for tests that revoke by jti).
func jtiOf(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ JTI string }
	json.Unmarshal(raw, &c)
	return c.JTI
}
