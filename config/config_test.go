package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagsWinOverFileOverDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	file := `apiVersion: portcullis.dev/v1alpha1
kind: PortcullisConfiguration
issuer: https://from-file
webhookPort: 7443
tls: {certFile: serving.crt, privateKeyFile: serving.key, webhookClientCAFile: webhook-client-ca.crt}
cache: {staleness: 5s}
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--service-account-issuer=https://from-flag", "--api-audiences=a,b"}); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://from-flag" {
		t.Errorf("issuer = %q, want the flag's", c.Issuer)
	}
	if c.WebhookPort != 7443 || c.Cache.Staleness.Duration != 5*time.Second {
		t.Errorf("file values lost: port %d staleness %v", c.WebhookPort, c.Cache.Staleness.Duration)
	}
	if c.SecurePort != 9443 {
		t.Errorf("default secure port lost: %d", c.SecurePort)
	}
	if !slices.Equal(c.APIAudiences, []string{"a", "b"}) {
		t.Errorf("audiences = %v", c.APIAudiences)
	}
	if c.TLS.CertFile != filepath.Join(dir, "serving.crt") {
		t.Errorf("relative path not resolved against the file: %q", c.TLS.CertFile)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Issuer = ""
	c.BindAddress = "not-an-ip"
	c.Store.Type = "redis"
	c.Log.Level = "loud"
	c.FeatureGates = map[string]bool{"Nope": true}
	c.Kubeconfig = "/etc/kubernetes/admin.conf"
	c.InCluster = true
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	for _, want := range []string{"--service-account-issuer", "--bind-address", "--store-type", "--log-level", "--tls-cert-file", "--feature-gates", "--in-cluster", "--webhook-client-ca-file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

func TestUnknownFieldInFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("apiVersion: portcullis.dev/v1alpha1\nkind: PortcullisConfiguration\nwebhookPrt: 1\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "webhookPrt") {
		t.Fatalf("Load = %v, want the misspelt field named", err)
	}
}

func TestWebhookAndIssuerClientCAsMustDiffer(t *testing.T) {
	c := Default()
	c.TLS = TLS{CertFile: "s.crt", PrivateKeyFile: "s.key", WebhookClientCAFile: "ca.crt", ClientCAFile: "ca.crt"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--client-ca-file") {
		t.Fatalf("Validate = %v; want --client-ca-file named: one CA for both trust boundaries", err)
	}
	c.TLS.ClientCAFile = "users-ca.crt"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}
