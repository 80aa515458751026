package app

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"portcullis.dev/portcullis/config"
)

// rawCreate posts a TokenRequest body as-is and returns status, headers and body.
func rawCreate(t *testing.T, c *http.Client, url, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, b.String()
}

func statusMessage(t *testing.T, body string) (string, string) {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status: %s", body)
	}
	return string(st.Reason), st.Message
}

func TestTokenRequestDefaultsAndAnswer(t *testing.T) {
	h := startServer(t, nil)
	tr, err := h.adminClient().CoreV1().ServiceAccounts("ns").CreateToken(context.Background(), "sa", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.remember(tr.Status.Token)
	// The typed client drops apiVersion/kind: read the wire answer for them.
	code, _, raw := rawCreate(t, h.adminHTTP(), h.issuerURL("/api/v1/namespaces/ns/serviceaccounts/sa/token"), `{"spec":{}}`)
	var wire metav1.TypeMeta
	json.Unmarshal([]byte(raw), &wire)
	if code != http.StatusCreated || wire.Kind != "TokenRequest" || wire.APIVersion != "authentication.k8s.io/v1" {
		t.Fatalf("answer is %d %s %s", code, wire.APIVersion, wire.Kind)
	}
	h.remember(tokenOf(t, raw))
	if tr.Name != "sa" || tr.Namespace != "ns" || tr.CreationTimestamp.IsZero() {
		t.Fatalf("metadata = %+v", tr.ObjectMeta)
	}
	if tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 3600 {
		t.Fatalf("expirationSeconds = %v, want the default 3600", tr.Spec.ExpirationSeconds)
	}
	if !slices.Equal(tr.Spec.Audiences, h.cfg.APIAudiences) {
		t.Fatalf("audiences = %v, want the API audiences %v", tr.Spec.Audiences, h.cfg.APIAudiences)
	}
	if d := time.Until(tr.Status.ExpirationTimestamp.Time); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("expirationTimestamp is %v away, want about an hour", d)
	}
	if strings.Count(tr.Status.Token, ".") != 2 {
		t.Fatal("status.token is not a compact JWS")
	}
}

func TestTokenRequestValidation(t *testing.T) {
	h := startServer(t, nil)
	c := h.adminHTTP()
	url := h.issuerURL("/api/v1/namespaces/ns/serviceaccounts/sa/token")
	cases := []struct {
		name, query, body string
		code              int
		reason, message   string
	}{
		{"too short", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":60}}`, 422, "Invalid",
			`TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes`},
		{"too long", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":4294967297}}`, 422, "Invalid",
			`TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds`},
		{"name mismatch", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","metadata":{"name":"other"},"spec":{}}`, 422, "Invalid",
			`TokenRequest.authentication.k8s.io "" is invalid: metadata.name: Invalid value: "other": must match the service account name if specified`},
		{"bind to a ConfigMap", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"boundObjectRef":{"apiVersion":"v1","kind":"ConfigMap","name":"c"}}}`, 400, "BadRequest",
			`cannot bind token to object of type /v1, Kind=ConfigMap`},
		{"strict field validation", "?fieldValidation=Strict", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"bogus":1}}`, 400, "BadRequest",
			`strict decoding error: unknown field "spec.bogus"`},
		{"bad dryRun value", "?dryRun=Some", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`, 422, "Invalid", `dryRun: Unsupported value`},
		{"not JSON", "", `{"spec":`, 400, "BadRequest", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := rawCreate(t, c, url+tc.query, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			reason, msg := statusMessage(t, body)
			if reason != tc.reason || !strings.Contains(msg, tc.message) {
				t.Fatalf("Status %s %q, want %s containing %q", reason, msg, tc.reason, tc.message)
			}
		})
	}

	t.Run("warn field validation", func(t *testing.T) {
		code, hdr, body := rawCreate(t, c, url+"?fieldValidation=Warn", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"bogus":1}}`)
		if code != http.StatusCreated {
			t.Fatalf("status %d: %s", code, body)
		}
		h.remember(tokenOf(t, body))
		if w := hdr.Get("Warning"); !strings.Contains(w, `unknown field \"spec.bogus\"`) {
			t.Fatalf("Warning header = %q", w)
		}
	})

	t.Run("dryRun=All records nothing and hands out no token", func(t *testing.T) {
		code, _, body := rawCreate(t, c, url+"?dryRun=All", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`)
		if code != http.StatusCreated {
			t.Fatalf("status %d: %s", code, body)
		}
		var tr authenticationv1.TokenRequest
		json.Unmarshal([]byte(body), &tr)
		if tr.Status.Token != "" || tr.Status.ExpirationTimestamp.IsZero() {
			t.Fatalf("dry run status = %+v, want no token and an expiry", tr.Status)
		}
	})

	t.Run("namespace mismatch", func(t *testing.T) {
		code, _, body := rawCreate(t, c, url, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","metadata":{"namespace":"other"},"spec":{}}`)
		if code != http.StatusBadRequest && code != http.StatusUnprocessableEntity {
			t.Fatalf("status %d, want a refusal: %s", code, body)
		}
		if _, msg := statusMessage(t, body); !strings.Contains(msg, "namespace") {
			t.Fatalf("message %q does not name the namespace", msg)
		}
	})

	t.Run("bound to a pod, standalone: 422, nothing could check the pod", func(t *testing.T) {
		code, _, body := rawCreate(t, c, url, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"boundObjectRef":{"apiVersion":"v1","kind":"Pod","name":"p","uid":"pod-uid"}}}`)
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("status %d, want 422: %s", code, body)
		}
		if _, msg := statusMessage(t, body); !strings.Contains(msg, "cluster-connected") || !strings.Contains(msg, "spec.boundObjectRef") {
			t.Fatalf("message %q does not say why", msg)
		}
	})
}

func tokenOf(t *testing.T, body string) string {
	t.Helper()
	var tr authenticationv1.TokenRequest
	if err := json.Unmarshal([]byte(body), &tr); err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func TestTokenRequestCap(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.MaxTokenExpiration = metav1.Duration{Duration: 2 * time.Hour} })
	code, hdr, body := rawCreate(t, h.adminHTTP(), h.issuerURL("/api/v1/namespaces/ns/serviceaccounts/sa/token"),
		`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":86400}}`)
	if code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, body)
	}
	h.remember(tokenOf(t, body))
	if w := hdr.Get("Warning"); !strings.Contains(w, "requested expiration of 86400 seconds shortened to 7200 seconds") {
		t.Fatalf("Warning = %q", w)
	}
}

func TestIssuerAuthentication(t *testing.T) {
	h := startServer(t, nil)
	url := h.issuerURL("/api/v1/namespaces/ns/serviceaccounts/sa/token")
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`

	t.Run("unauthenticated is 401 Status", func(t *testing.T) {
		code, _, out := rawCreate(t, h.httpClient(""), url, body)
		if code != http.StatusUnauthorized {
			t.Fatalf("status %d: %s", code, out)
		}
		if reason, _ := statusMessage(t, out); reason != "Unauthorized" {
			t.Fatalf("reason %s", reason)
		}
	})
	t.Run("non-admin certificate is 403 Status", func(t *testing.T) {
		h.writeCert("alice", "alice", "developers")
		code, _, out := rawCreate(t, h.httpClient("alice"), url, body)
		if code != http.StatusForbidden {
			t.Fatalf("status %d: %s", code, out)
		}
		if _, msg := statusMessage(t, out); !strings.Contains(msg, `User "alice" cannot create resource "serviceaccounts/token"`) {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("Portcullis tokens authenticate at the issuer", func(t *testing.T) {
		tok := h.mint("ns", "robot", 3600).Status.Token
		cfg := &rest.Config{Host: h.issuerURL(""), BearerToken: tok, TLSClientConfig: rest.TLSClientConfig{CAData: h.restConfig(AdminKubeconfig).CAData}}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = client.CoreV1().ServiceAccounts("ns").CreateToken(context.Background(), "sa", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "system:serviceaccount:ns:robot") {
			t.Fatalf("err = %v; want Forbidden for the token's service account (it authenticated, it is no admin)", err)
		}
		// Discovery is open to any authenticated caller.
		if _, err := client.Discovery().ServerGroups(); err != nil {
			t.Fatalf("discovery with a Portcullis token: %v", err)
		}
		cfg.BearerToken = "not-a-token"
		bad, _ := kubernetes.NewForConfig(cfg)
		if _, err := bad.Discovery().ServerGroups(); !apierrors.IsUnauthorized(err) {
			t.Fatalf("bad bearer token: %v, want Unauthorized", err)
		}
	})
	t.Run("health is public", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/livez", "/readyz"} {
			resp, err := h.httpClient("").Get(h.issuerURL(p))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d", p, resp.StatusCode)
			}
		}
	})
}
