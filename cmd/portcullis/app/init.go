package app

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientcmd "k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/keys"
)

// Files written by init, relative to its directory.
const (
	ConfigFile           = "portcullis.yaml"
	WebhookKubeconfig    = "webhook.kubeconfig"
	AdminKubeconfig      = "admin.kubeconfig"
	caBase               = "ca"
	webhookClientCABase  = "webhook-client-ca"
	clientCABase         = "client-ca"
	servingBase          = "serving"
	webhookClientBase    = "kube-apiserver-client"
	adminBase            = "admin"
	AdminUser            = "portcullis-admin"
	AdminGroup           = config.DefaultAdminGroup
	WebhookClientName    = "kube-apiserver"
	caValidity           = 10 * 365 * 24 * time.Hour
	leafValidity         = 365 * 24 * time.Hour
	defaultInitHostsFlag = "localhost,127.0.0.1"
)

// InitOptions are init's flags.
type InitOptions struct {
	Dir          string
	Hosts        []string
	Force        bool
	Issuer       string
	APIAudiences []string
	WebhookPort  int
	SecurePort   int
	Algorithm    string
}

// NewInitOptions returns init's defaults.
func NewInitOptions() *InitOptions {
	d := config.Default()
	return &InitOptions{
		Dir: ".portcullis", Hosts: strings.Split(defaultInitHostsFlag, ","),
		Issuer: d.Issuer, APIAudiences: d.APIAudiences, WebhookPort: d.WebhookPort, SecurePort: d.SecurePort,
		Algorithm: keys.DefaultAlgorithm.String(),
	}
}

// AddFlags binds the options to fs.
func (o *InitOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Dir, "dir", o.Dir, "Directory to write certificates, keys, kubeconfigs and the config into.")
	fs.StringSliceVar(&o.Hosts, "hosts", o.Hosts, "Host names and IPs the serving certificate is for; the first is used in the kubeconfigs.")
	fs.BoolVar(&o.Force, "force", o.Force, "Overwrite files that exist (this replaces the CAs; the signing keys stay in the store: rotate and retire them with portcullis keys).")
	fs.StringVar(&o.Issuer, "service-account-issuer", o.Issuer, "Issuer (iss) of minted tokens.")
	fs.StringSliceVar(&o.APIAudiences, "api-audiences", o.APIAudiences, "Default audiences; use kube-apiserver's --api-audiences (or its --service-account-issuer).")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "Port of the webhook listener.")
	fs.IntVar(&o.SecurePort, "secure-port", o.SecurePort, "Port of the issuer API.")
	fs.StringVar(&o.Algorithm, "algorithm", o.Algorithm, "Algorithm of the first signing key: ES256, EdDSA or RS256.")
}

// RunInit writes everything a user needs into o.Dir and prints what to do next.
func RunInit(o *InitOptions, out io.Writer, clk clock.PassiveClock, random io.Reader) error {
	if len(o.Hosts) == 0 || o.Hosts[0] == "" {
		return errors.New("init: --hosts needs at least one host")
	}
	alg, err := keys.ParseAlgorithm(o.Algorithm)
	if err != nil {
		return fmt.Errorf("init: --algorithm: %w", err)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	written := []string{ConfigFile, WebhookKubeconfig, AdminKubeconfig, config.KEKFile,
		caBase + ".crt", caBase + ".key", webhookClientCABase + ".crt", webhookClientCABase + ".key", clientCABase + ".crt", clientCABase + ".key",
		servingBase + ".crt", servingBase + ".key",
		webhookClientBase + ".crt", webhookClientBase + ".key", adminBase + ".crt", adminBase + ".key"}
	if !o.Force {
		var existing []string
		for _, f := range written {
			if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
				existing = append(existing, f)
			}
		}
		if len(existing) > 0 {
			return fmt.Errorf("init: %s already holds %s; refusing to overwrite without --force", dir, strings.Join(existing, ", "))
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	now := clk.Now()
	// One CA per trust boundary: serving (what clients trust), webhook
	// callers (kube-apiserver) and issuer users. A certificate made for one
	// purpose is refused at the others: kube-apiserver's webhook identity
	// cannot log in to the issuer and mint itself tokens.
	ca, err := issueCert(certSpec{commonName: "portcullis-ca", isCA: true, validFor: caValidity}, nil, random, now)
	if err != nil {
		return err
	}
	webhookCA, err := issueCert(certSpec{commonName: "portcullis-webhook-client-ca", isCA: true, validFor: caValidity}, nil, random, now)
	if err != nil {
		return err
	}
	clientCA, err := issueCert(certSpec{commonName: "portcullis-client-ca", isCA: true, validFor: caValidity}, nil, random, now)
	if err != nil {
		return err
	}
	serving, err := issueCert(certSpec{commonName: "portcullis", hosts: o.Hosts, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, validFor: leafValidity}, ca, random, now)
	if err != nil {
		return err
	}
	webhookClient, err := issueCert(certSpec{commonName: WebhookClientName, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validFor: leafValidity}, webhookCA, random, now)
	if err != nil {
		return err
	}
	admin, err := issueCert(certSpec{commonName: AdminUser, organization: []string{AdminGroup}, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, validFor: leafValidity}, clientCA, random, now)
	if err != nil {
		return err
	}
	for base, c := range map[string]*certKey{caBase: ca, webhookClientCABase: webhookCA, clientCABase: clientCA, servingBase: serving, webhookClientBase: webhookClient, adminBase: admin} {
		if err := c.write(filepath.Join(dir, base)); err != nil {
			return err
		}
	}

	// The key-encryption key seals the signing keys in the store. It is
	// kept even with --force: the ring sealed with it must stay readable.
	kek := filepath.Join(dir, config.KEKFile)
	if _, err := os.Stat(kek); errors.Is(err, os.ErrNotExist) {
		if err := keys.WriteKEKFile(kek, random); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("init: %w", err)
	}

	host := o.Hosts[0]
	webhookURL := "https://" + net.JoinHostPort(host, strconv.Itoa(o.WebhookPort)) + "/authenticate"
	issuerURL := "https://" + net.JoinHostPort(host, strconv.Itoa(o.SecurePort))
	if err := writeKubeconfig(filepath.Join(dir, WebhookKubeconfig), "portcullis-webhook", webhookURL, ca.pem, WebhookClientName, webhookClient); err != nil {
		return err
	}
	if err := writeKubeconfig(filepath.Join(dir, AdminKubeconfig), "portcullis", issuerURL, ca.pem, AdminUser, admin); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Issuer = o.Issuer
	cfg.APIAudiences = o.APIAudiences
	cfg.WebhookPort, cfg.SecurePort = o.WebhookPort, o.SecurePort
	cfg.TLS = config.TLS{CertFile: servingBase + ".crt", PrivateKeyFile: servingBase + ".key",
		WebhookClientCAFile: webhookClientCABase + ".crt", ClientCAFile: clientCABase + ".crt"}
	cfg.WebhookAllowedNames = []string{WebhookClientName}
	cfg.KeyRotation.Algorithm = alg.String()
	data, err := cfg.Marshal()
	if err != nil {
		return err
	}
	header := "# Written by `portcullis init`. Every field is also a flag of `portcullis serve`; flags win.\n"
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), append([]byte(header), data...), 0o600); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	printNextSteps(out, dir, o)
	return nil
}

// writeKubeconfig writes a kubeconfig with the CA and the client certificate
// embedded, using client-go's clientcmd.
func writeKubeconfig(path, cluster, server string, caPEM []byte, userName string, client *certKey) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kc.AuthInfos[userName] = &clientcmdapi.AuthInfo{ClientCertificateData: client.pem, ClientKeyData: client.kpem}
	kc.Contexts[cluster] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: userName}
	kc.CurrentContext = cluster
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("init: %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

func printNextSteps(out io.Writer, dir string, o *InitOptions) {
	fmt.Fprintf(out, `Portcullis is initialised in %[1]s. Its first start makes the first signing key
(%[2]s), sealed in its store with %[1]s/%[6]s.

Start it:
  portcullis serve --config %[1]s/%[3]s

Add these flags to kube-apiserver:
  --authentication-token-webhook-config-file=%[1]s/%[4]s
  --authentication-token-webhook-version=v1
  --authentication-token-webhook-cache-ttl=30s
kube-apiserver caches every webhook answer for --authentication-token-webhook-cache-ttl
(default 2m) and successes for 10s more: that is the longest a revoked token still works
through kube-apiserver. Lower it for faster revocation; each miss costs one review.
kube-apiserver reads the webhook kubeconfig only at start: the CA in it (%[1]s/ca.crt)
must outlive the serving certificate.

Mint a first token (as the admin, through the issuer's TokenRequest API):
  kubectl --kubeconfig %[1]s/%[5]s create token default -n default --duration 1h
and check it with kube-apiserver:
  kubectl --token <token> auth whoami
`, dir, o.Algorithm, ConfigFile, WebhookKubeconfig, AdminKubeconfig, config.KEKFile)
}
