package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/config"
)

// TestServeRefusesWebhookWithoutClientCA: without a CA to verify callers the
// webhook would answer anyone holding any certificate, an oracle for stolen
// tokens. serve must not start, and say which flag is missing.
func TestServeRefusesWebhookWithoutClientCA(t *testing.T) {
	dir := initDir(t)
	cfg, err := config.Load(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS.WebhookClientCAFile = ""
	_, err = NewServer(cfg, nil, nil, rand.Reader)
	if err == nil || !strings.Contains(err.Error(), "--webhook-client-ca-file") {
		t.Fatalf("NewServer = %v; want a config error naming --webhook-client-ca-file", err)
	}
}

// TestWebhookRefusesSelfSignedKubeAPIServerName: a certificate that merely
// claims CN=kube-apiserver, signed by nobody the webhook trusts, is refused
// in the TLS handshake even though its name is on the allow-list.
func TestWebhookRefusesSelfSignedKubeAPIServerName(t *testing.T) {
	h := startServer(t, nil)
	good := h.mint("ns", "sa", 3600).Status.Token
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: WebhookClientName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.caPool(), Certificates: []tls.Certificate{cert}}}}
	resp, err := c.Post(h.webhookURL(), "application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+good+`"}}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("answered %d to a self-signed certificate; want the handshake refused", resp.StatusCode)
	}
}

// TestTrustBoundariesAreSeparate: init's webhook client CA and issuer user
// CA are different, so a certificate made for one purpose is refused at the
// other, whatever names it carries (the allow-list is off here so that only
// the CA can refuse).
func TestTrustBoundariesAreSeparate(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.WebhookAllowedNames = nil })
	good := h.mint("ns", "sa", 3600).Status.Token
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + good + `"}}`

	if a, b := readFile(t, filepath.Join(h.dir, clientCABase+".crt")), readFile(t, filepath.Join(h.dir, webhookClientCABase+".crt")); a == b {
		t.Fatal("init wrote one CA for both webhook callers and issuer users")
	}

	t.Run("the issuer's admin certificate at the webhook", func(t *testing.T) {
		resp, err := h.httpClient(adminBase).Post(h.webhookURL(), "application/json", strings.NewReader(review))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d; want the handshake refused", resp.StatusCode)
		}
	})
	t.Run("a user CA certificate named kube-apiserver at the webhook", func(t *testing.T) {
		h.writeCertFrom(clientCABase, "fake-apiserver", WebhookClientName)
		resp, err := h.httpClient("fake-apiserver").Post(h.webhookURL(), "application/json", strings.NewReader(review))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("answered %d; want the handshake refused", resp.StatusCode)
		}
	})
	t.Run("kube-apiserver's webhook certificate at the issuer", func(t *testing.T) {
		code := getStatus(t, h.httpClient(webhookClientBase), h.issuerURL("/api/v1/namespaces/default/serviceaccounts/default/token"))
		if code != http.StatusUnauthorized {
			t.Fatalf("issuer answered %d to kube-apiserver's webhook certificate; want 401", code)
		}
	})
	t.Run("a webhook CA certificate naming an admin at the issuer", func(t *testing.T) {
		h.writeCertFrom(webhookClientCABase, "fake-admin", AdminUser, AdminGroup)
		resp, err := h.httpClient("fake-admin").Post(h.issuerURL("/api/v1/namespaces/default/serviceaccounts/default/token"),
			"application/json", strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("issuer answered %d to a webhook-CA certificate naming the admin; want 401", resp.StatusCode)
		}
	})
	t.Run("the issuer's admin certificate at the issuer", func(t *testing.T) {
		if code := getStatus(t, h.adminHTTP(), h.issuerURL("/apis")); code != http.StatusOK {
			t.Fatalf("issuer answered %d to the admin; want 200", code)
		}
	})
}

func getStatus(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
