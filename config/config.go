package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/issuer/vnc"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/token"
)

// The config file's apiVersion and kind.
const (
	APIVersion = "portcullis.dev/v1alpha1"
	Kind       = "PortcullisConfiguration"
)

// Store types.
const (
	StoreBolt = "bbolt"
	StoreEtcd = "etcd"
)

// Config is the whole configuration of `portcullis serve`.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// Issuer is the iss claim of minted tokens and the only one accepted.
	Issuer string `json:"issuer"`
	// APIAudiences are the audiences tokens get, and reviews check, when none
	// are named.
	APIAudiences []string `json:"apiAudiences"`
	// AdminGroups may mint, revoke and manage keys through the issuer API.
	AdminGroups []string `json:"adminGroups"`
	// MaxTokenExpiration caps requested token lifetimes (0: no cap).
	MaxTokenExpiration metav1.Duration `json:"maxTokenExpiration"`

	// BindAddress is the address both listeners bind to.
	BindAddress string `json:"bindAddress"`
	// WebhookPort serves POST /authenticate for kube-apiserver.
	WebhookPort int `json:"webhookPort"`
	// SecurePort serves the issuer API.
	SecurePort int `json:"securePort"`
	// MetricsPort serves /metrics and health over plain HTTP (-1: off).
	MetricsPort int `json:"metricsPort"`
	// AuditLogPath receives the audit log as JSON lines ("-": stdout; "": off).
	AuditLogPath string `json:"auditLogPath,omitempty"`
	// AuditLogMaxSize is the size in megabytes at which the audit log file
	// is rotated, and AuditLogMaxBackups how many rotated files are kept
	// (kube-apiserver's --audit-log-maxsize and --audit-log-maxbackup).
	AuditLogMaxSize    int `json:"auditLogMaxSize,omitempty"`
	AuditLogMaxBackups int `json:"auditLogMaxBackups,omitempty"`
	// TLS holds the serving certificate and the client CA.
	TLS TLS `json:"tls"`
	// WebhookAllowedNames, when set, are the only client certificate common
	// names the webhook answers (kube-apiserver's), as
	// --requestheader-allowed-names does for front proxies.
	WebhookAllowedNames []string `json:"webhookAllowedNames,omitempty"`

	// KeysDir is a key directory of earlier versions (ring.json and
	// <kid>.jwk files): imported into the store once, when the store holds
	// no ring. The ring lives in the store; nothing writes this directory.
	KeysDir string `json:"keysDir,omitempty"`
	// KeyEncryption seals the private keys the store holds.
	KeyEncryption KeyEncryption `json:"keyEncryption"`
	// KeyRotation configures new keys and when they sign.
	KeyRotation KeyRotation `json:"keyRotation"`
	// Store is the revocation and TTL store.
	Store Store `json:"store"`
	// Cache bounds the review cache.
	Cache Cache `json:"cache"`
	// PurgeInterval is how often expired records are purged.
	PurgeInterval metav1.Duration `json:"purgeInterval"`

	// Kubeconfig points at a kube-apiserver: cluster-connected mode.
	// Callers' bearer tokens of other kinds are then checked by TokenReview
	// and requests are authorized by SubjectAccessReview (RBAC decides).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// InCluster is cluster-connected mode with the pod's service account.
	InCluster bool `json:"inCluster,omitempty"`
	// RequestHeader trusts identities forwarded by a front proxy, such as
	// kube-apiserver's aggregation layer, as kube-apiserver's
	// --requestheader-* flags describe them.
	RequestHeader RequestHeader `json:"requestHeader,omitempty"`
	// FeatureGates turns features on or off by name.
	FeatureGates map[string]bool `json:"featureGates,omitempty"`

	// VNC configures the token.kubevirt.io VNC token API.
	VNC VNCConfig `json:"vnc"`

	// UserTokens configures the ext.cattle.io user Token API.
	UserTokens UserTokensConfig `json:"userTokens"`

	// Log configures logging.
	Log Log `json:"log"`
	// ShutdownGracePeriod bounds graceful shutdown on SIGTERM.
	ShutdownGracePeriod metav1.Duration `json:"shutdownGracePeriod"`
}

// TLS is the serving certificate and the CAs for client certificates: one
// per trust boundary, as kube-apiserver keeps --client-ca-file apart from
// --requestheader-client-ca-file.
type TLS struct {
	CertFile       string `json:"certFile"`
	PrivateKeyFile string `json:"privateKeyFile"`
	// WebhookClientCAFile verifies the webhook's callers (kube-apiserver).
	// Required: the webhook answers no caller it cannot verify.
	WebhookClientCAFile string `json:"webhookClientCAFile"`
	// ClientCAFile verifies users' x509 client certificates at the issuer
	// (CN = user, O = groups); empty: the issuer takes no client certificates.
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// RequestHeader is the front proxy's CA and headers.
type RequestHeader struct {
	// ClientCAFile verifies the front proxy's client certificate; empty
	// disables front-proxy authentication.
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// AllowedNames are the front proxy certificate's allowed common names
	// (empty: any the CA signed).
	AllowedNames        []string `json:"allowedNames,omitempty"`
	UsernameHeaders     []string `json:"usernameHeaders,omitempty"`
	UIDHeaders          []string `json:"uidHeaders,omitempty"`
	GroupHeaders        []string `json:"groupHeaders,omitempty"`
	ExtraHeaderPrefixes []string `json:"extraHeaderPrefixes,omitempty"`
}

// Store selects and configures the store backend.
type Store struct {
	Type string `json:"type"`
	// Path is the bbolt file.
	Path string `json:"path,omitempty"`
	// Endpoints are the etcd cluster's client URLs.
	Endpoints []string `json:"endpoints,omitempty"`
	// Prefix is put before every etcd key (default /portcullis/).
	Prefix string `json:"prefix,omitempty"`
	// TLS of the etcd client: CA, client certificate and key files.
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// Cache bounds the ristretto caches and the staleness of cached records.
type Cache struct {
	MaxEntries int64           `json:"maxEntries"`
	Staleness  metav1.Duration `json:"staleness"`
}

// KeyEncryption is the key-encryption provider of the signing keys.
type KeyEncryption struct {
	// Provider is file:PATH (a 32-byte AES-256-GCM key, mode 0600, written
	// by init) or kms:unix:///PATH.sock (a Kubernetes KMS v2 plugin).
	Provider string `json:"provider"`
	// Timeout bounds one call to a KMS plugin.
	Timeout metav1.Duration `json:"timeout,omitempty"`
}

// KEKFile is the key-encryption key file init writes beside the config.
const KEKFile = "key-encryption.key"

// KeyRotation configures signing key rotation.
type KeyRotation struct {
	// Algorithm of new keys: ES256, EdDSA or RS256.
	Algorithm string `json:"algorithm"`
	// PropagationDelay is how long a new key is published in the JWKS before
	// it signs; JWKS answers may be cached for half of it.
	PropagationDelay metav1.Duration `json:"propagationDelay"`
	// Period rotates the active key when it is this old (0: only by hand).
	Period metav1.Duration `json:"period"`
}

// VNCConfig bounds VNC tokens.
type VNCConfig struct {
	// MinDuration is the shortest token (10m as KubeVirt documents; lower it
	// for short console tokens).
	MinDuration metav1.Duration `json:"minDuration"`
	// MaxDuration is the longest token (0: Kubernetes' 2^32 s).
	MaxDuration metav1.Duration `json:"maxDuration,omitempty"`
	// Audience is what VNC proxies ask reviews for.
	Audience string `json:"audience"`
}

// UserTokensConfig bounds user tokens.
type UserTokensConfig struct {
	// MaxTTL is the longest lifetime and the lifetime when none is asked
	// (Rancher's auth-token-max-ttl-minutes; 90 days).
	MaxTTL metav1.Duration `json:"maxTTL"`
	// MaxPerUser bounds the live tokens of one user (0: no bound).
	MaxPerUser int `json:"maxPerUser"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `json:"level"`
	// Format is text or json.
	Format string `json:"format"`
}

// Feature gates.
const (
	// UserTokens serves the ext.cattle.io/v1 user Token API.
	UserTokens = "UserTokens"
)

// KnownFeatureGates lists the feature gates and their defaults.
var KnownFeatureGates = map[string]bool{UserTokens: true}

// Enabled reports whether the feature gate name is on.
func (c *Config) Enabled(name string) bool {
	if v, ok := c.FeatureGates[name]; ok {
		return v
	}
	return KnownFeatureGates[name]
}

// DefaultAdminGroup is the group that may use every issuer API (the
// organization of the admin certificate `portcullis init` writes).
const DefaultAdminGroup = "portcullis:admins"

// Default returns the configuration used where neither file nor flags say.
func Default() *Config {
	return &Config{
		APIVersion:   APIVersion,
		Kind:         Kind,
		Issuer:       "https://portcullis.portcullis.svc",
		APIAudiences: []string{"https://kubernetes.default.svc.cluster.local"},
		AdminGroups:  []string{DefaultAdminGroup},
		BindAddress:  "0.0.0.0",
		WebhookPort:  8443,
		SecurePort:   9443,
		MetricsPort:  9090,
		// The audit log holds at most (1 + backups) × size: 1.1 GB.
		AuditLogMaxSize:    100,
		AuditLogMaxBackups: 10,
		KeyEncryption:      KeyEncryption{Provider: "file:" + KEKFile, Timeout: metav1.Duration{Duration: keys.DefaultKMSTimeout}},
		Store:              Store{Type: StoreBolt, Path: filepath.Join("data", "portcullis.db")},
		Cache:              Cache{MaxEntries: cache.DefaultMaxEntries, Staleness: metav1.Duration{Duration: revocation.DefaultStaleness}},
		PurgeInterval:      metav1.Duration{Duration: revocation.DefaultPurgeInterval},
		Log:                Log{Level: "info", Format: "text"},
		KeyRotation:        KeyRotation{Algorithm: "ES256", PropagationDelay: metav1.Duration{Duration: 10 * time.Minute}},
		VNC:                VNCConfig{MinDuration: metav1.Duration{Duration: vnc.DefaultMinDuration}, Audience: token.VNCAudience},
		UserTokens:         UserTokensConfig{MaxTTL: metav1.Duration{Duration: tokens.DefaultMaxTTL}, MaxPerUser: tokens.DefaultMaxPerUser},
		RequestHeader: RequestHeader{
			UsernameHeaders:     []string{"X-Remote-User"},
			UIDHeaders:          []string{"X-Remote-Uid"},
			GroupHeaders:        []string{"X-Remote-Group"},
			ExtraHeaderPrefixes: []string{"X-Remote-Extra-"},
		},
		ShutdownGracePeriod: metav1.Duration{Duration: 15 * time.Second},
	}
}

// Load reads a config file over the defaults. Relative paths in the file are
// relative to the file's directory.
func Load(path string) (*Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

func (c *Config) resolvePaths(dir string) {
	for _, p := range []*string{&c.TLS.CertFile, &c.TLS.PrivateKeyFile, &c.TLS.ClientCAFile, &c.TLS.WebhookClientCAFile, &c.KeysDir, &c.Store.Path, &c.Kubeconfig, &c.RequestHeader.ClientCAFile,
		&c.Store.CAFile, &c.Store.CertFile, &c.Store.KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if path, ok := strings.CutPrefix(c.KeyEncryption.Provider, "file:"); ok && path != "" && !filepath.IsAbs(path) {
		c.KeyEncryption.Provider = "file:" + filepath.Join(dir, path)
	}
}

// kubernetesMaxTokenLifetime is the longest lifetime Kubernetes lets a
// TokenRequest ask for (2^32 s); Portcullis' front doors use it when no cap
// is configured.
const kubernetesMaxTokenLifetime = (1 << 32) * time.Second

// LongestTokenLifetime is the longest lifetime any front door can grant
// with this config: after it, no token minted before a given instant can
// still be alive.
func (c *Config) LongestTokenLifetime() time.Duration {
	tokenRequest, vnc := c.MaxTokenExpiration.Duration, c.VNC.MaxDuration.Duration
	if tokenRequest == 0 {
		tokenRequest = kubernetesMaxTokenLifetime
	}
	if vnc == 0 {
		vnc = kubernetesMaxTokenLifetime
	}
	return max(tokenRequest, vnc, c.UserTokens.MaxTTL.Duration)
}

// ClusterConnected reports whether Portcullis talks to a kube-apiserver.
func (c *Config) ClusterConnected() bool { return c.Kubeconfig != "" || c.InCluster }

// RESTConfig returns the client config of cluster-connected mode, or nil
// when standalone.
func (c *Config) RESTConfig() (*rest.Config, error) {
	switch {
	case c.InCluster:
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("--in-cluster: %w", err)
		}
		return cfg, nil
	case c.Kubeconfig != "":
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return cfg, nil
	}
	return nil, nil
}

// Marshal encodes c as a config file.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }
