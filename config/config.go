package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cliflag "k8s.io/component-base/cli/flag"
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

	// KeysDir holds the signing key ring (ring.json and <kid>.jwk files).
	KeysDir string `json:"keysDir"`
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
		KeysDir:            "keys",
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

// AddFlags binds every field to a flag on fs. Call it on a config that
// already holds the defaults and the file, so that flags win.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Issuer, "service-account-issuer", c.Issuer, "Issuer (iss) of minted tokens; the only issuer accepted.")
	fs.StringSliceVar(&c.APIAudiences, "api-audiences", c.APIAudiences, "Audiences of tokens, and of reviews that name none.")
	fs.StringSliceVar(&c.AdminGroups, "admin-groups", c.AdminGroups, "Groups whose members may use every issuer API.")
	fs.DurationVar(&c.MaxTokenExpiration.Duration, "service-account-max-token-expiration", c.MaxTokenExpiration.Duration, "Cap on requested token lifetimes; longer requests are shortened with a warning (0: no cap).")
	fs.StringVar(&c.BindAddress, "bind-address", c.BindAddress, "Address the webhook and issuer listeners bind to.")
	fs.IntVar(&c.WebhookPort, "webhook-port", c.WebhookPort, "Port of the TokenReview webhook (POST /authenticate).")
	fs.IntVar(&c.SecurePort, "secure-port", c.SecurePort, "Port of the issuer API.")
	fs.IntVar(&c.MetricsPort, "metrics-port", c.MetricsPort, "Port of /metrics and health, plain HTTP (-1: off).")
	fs.StringVar(&c.AuditLogPath, "audit-log-path", c.AuditLogPath, "File of the audit log, JSON lines (-: stdout; empty: off).")
	fs.IntVar(&c.AuditLogMaxSize, "audit-log-maxsize", c.AuditLogMaxSize, "Size in megabytes at which the audit log file is rotated.")
	fs.IntVar(&c.AuditLogMaxBackups, "audit-log-maxbackup", c.AuditLogMaxBackups, "Rotated audit log files to keep.")
	fs.StringVar(&c.TLS.CertFile, "tls-cert-file", c.TLS.CertFile, "Serving certificate (PEM).")
	fs.StringVar(&c.TLS.PrivateKeyFile, "tls-private-key-file", c.TLS.PrivateKeyFile, "Serving certificate's private key (PEM).")
	fs.StringVar(&c.TLS.WebhookClientCAFile, "webhook-client-ca-file", c.TLS.WebhookClientCAFile, "CA that verifies the webhook's callers' client certificates (kube-apiserver's); required.")
	fs.StringVar(&c.TLS.ClientCAFile, "client-ca-file", c.TLS.ClientCAFile, "CA that verifies users' client certificates at the issuer API (CN = user, O = groups); a different CA from --webhook-client-ca-file.")
	fs.StringSliceVar(&c.WebhookAllowedNames, "webhook-allowed-names", c.WebhookAllowedNames, "Client certificate common names the webhook answers (empty: any certificate the client CA verified).")
	fs.StringVar(&c.KeysDir, "keys-dir", c.KeysDir, "Directory of the signing key ring.")
	fs.StringVar(&c.KeyRotation.Algorithm, "key-algorithm", c.KeyRotation.Algorithm, "Algorithm of new signing keys: ES256, EdDSA or RS256.")
	fs.DurationVar(&c.KeyRotation.PropagationDelay.Duration, "key-propagation-delay", c.KeyRotation.PropagationDelay.Duration, "How long a new key is published in the JWKS before it signs.")
	fs.DurationVar(&c.KeyRotation.Period.Duration, "key-rotation-period", c.KeyRotation.Period.Duration, "Rotate the signing key when it is this old (0: only by hand).")
	fs.StringVar(&c.Store.Type, "store-type", c.Store.Type, "Store backend: bbolt (one replica) or etcd (several).")
	fs.StringVar(&c.Store.Path, "store-path", c.Store.Path, "bbolt file of the store.")
	fs.StringSliceVar(&c.Store.Endpoints, "etcd-servers", c.Store.Endpoints, "etcd client URLs, with --store-type=etcd.")
	fs.StringVar(&c.Store.Prefix, "etcd-prefix", c.Store.Prefix, "Prefix of every etcd key.")
	fs.StringVar(&c.Store.CAFile, "etcd-cafile", c.Store.CAFile, "CA of the etcd servers' certificates.")
	fs.StringVar(&c.Store.CertFile, "etcd-certfile", c.Store.CertFile, "Client certificate for etcd.")
	fs.StringVar(&c.Store.KeyFile, "etcd-keyfile", c.Store.KeyFile, "Client key for etcd.")
	fs.Int64Var(&c.Cache.MaxEntries, "cache-max-entries", c.Cache.MaxEntries, "Entries each review cache may hold.")
	fs.DurationVar(&c.Cache.Staleness.Duration, "cache-staleness", c.Cache.Staleness.Duration, "How long a cached record is used before the store is asked again.")
	fs.DurationVar(&c.PurgeInterval.Duration, "purge-interval", c.PurgeInterval.Duration, "How often expired records are purged.")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig of a kube-apiserver: cluster-connected mode (TokenReview for other bearer tokens, SubjectAccessReview for authorization).")
	fs.BoolVar(&c.InCluster, "in-cluster", c.InCluster, "Cluster-connected mode with the pod's service account.")
	fs.StringVar(&c.RequestHeader.ClientCAFile, "requestheader-client-ca-file", c.RequestHeader.ClientCAFile, "CA of the front proxy (kube-apiserver's aggregation layer) whose X-Remote-* headers are trusted.")
	fs.StringSliceVar(&c.RequestHeader.AllowedNames, "requestheader-allowed-names", c.RequestHeader.AllowedNames, "Common names allowed for the front proxy's certificate (empty: any the CA signed).")
	fs.StringSliceVar(&c.RequestHeader.UsernameHeaders, "requestheader-username-headers", c.RequestHeader.UsernameHeaders, "Headers holding the front proxy's username.")
	fs.StringSliceVar(&c.RequestHeader.UIDHeaders, "requestheader-uid-headers", c.RequestHeader.UIDHeaders, "Headers holding the front proxy's user uid.")
	fs.StringSliceVar(&c.RequestHeader.GroupHeaders, "requestheader-group-headers", c.RequestHeader.GroupHeaders, "Headers holding the front proxy's groups.")
	fs.StringSliceVar(&c.RequestHeader.ExtraHeaderPrefixes, "requestheader-extra-headers-prefix", c.RequestHeader.ExtraHeaderPrefixes, "Header prefixes holding the front proxy's extra user information.")
	if c.FeatureGates == nil {
		c.FeatureGates = map[string]bool{}
	}
	fs.Var(cliflag.NewMapStringBool(&c.FeatureGates), "feature-gates", "Feature gates as key=value pairs. Known gates: "+knownGates()+".")
	fs.DurationVar(&c.VNC.MinDuration.Duration, "vnc-min-duration", c.VNC.MinDuration.Duration, "Shortest VNC token.")
	fs.DurationVar(&c.VNC.MaxDuration.Duration, "vnc-max-duration", c.VNC.MaxDuration.Duration, "Longest VNC token (0: Kubernetes' 2^32 s).")
	fs.StringVar(&c.VNC.Audience, "vnc-audience", c.VNC.Audience, "Audience of VNC tokens that VNC proxies ask reviews for.")
	fs.DurationVar(&c.UserTokens.MaxTTL.Duration, "user-token-max-ttl", c.UserTokens.MaxTTL.Duration, "Longest lifetime of a user token, and its lifetime when none is asked.")
	fs.IntVar(&c.UserTokens.MaxPerUser, "user-token-max-per-user", c.UserTokens.MaxPerUser, "Live user tokens one user may hold (0: no bound).")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "Log level: debug, info, warn or error.")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "Log format: text or json.")
	fs.DurationVar(&c.ShutdownGracePeriod.Duration, "shutdown-grace-period", c.ShutdownGracePeriod.Duration, "How long SIGTERM waits for requests in flight.")
}

func knownGates() string {
	if len(KnownFeatureGates) == 0 {
		return "none yet"
	}
	var names []string
	for n := range KnownFeatureGates {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
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

// Validate reports every problem with c at once, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.APIVersion != APIVersion || c.Kind != Kind {
		errs = append(errs, fmt.Errorf("config: apiVersion/kind %q/%q, expected %q/%q", c.APIVersion, c.Kind, APIVersion, Kind))
	}
	if c.Issuer == "" {
		bad("service-account-issuer", "is required")
	}
	if len(c.APIAudiences) == 0 || slices.Contains(c.APIAudiences, "") {
		bad("api-audiences", "at least one non-empty audience is required")
	}
	if len(c.AdminGroups) == 0 {
		bad("admin-groups", "at least one group is required, or nobody could mint")
	}
	if c.MaxTokenExpiration.Duration != 0 && (c.MaxTokenExpiration.Duration < time.Hour || c.MaxTokenExpiration.Duration > (1<<32)*time.Second) {
		bad("service-account-max-token-expiration", "%s is outside [1h, 2^32s]", c.MaxTokenExpiration.Duration)
	}
	if net.ParseIP(c.BindAddress) == nil {
		bad("bind-address", "%q is not an IP address", c.BindAddress)
	}
	for flag, port := range map[string]int{"webhook-port": c.WebhookPort, "secure-port": c.SecurePort} {
		if port < 0 || port > 65535 {
			bad(flag, "%d is not a port", port)
		}
	}
	if c.WebhookPort == c.SecurePort && c.WebhookPort != 0 {
		bad("secure-port", "must differ from --webhook-port (%d)", c.WebhookPort)
	}
	if c.TLS.CertFile == "" {
		bad("tls-cert-file", "is required: both listeners serve TLS only")
	}
	if c.TLS.PrivateKeyFile == "" {
		bad("tls-private-key-file", "is required: both listeners serve TLS only")
	}
	if c.TLS.WebhookClientCAFile == "" {
		bad("webhook-client-ca-file", "is required: the webhook answers only callers whose client certificate this CA verifies (kube-apiserver's)")
	}
	if c.TLS.ClientCAFile != "" && c.TLS.ClientCAFile == c.TLS.WebhookClientCAFile {
		bad("client-ca-file", "must differ from --webhook-client-ca-file: a certificate made for the webhook must not log in to the issuer")
	}
	if c.KeysDir == "" {
		bad("keys-dir", "is required")
	}
	switch c.Store.Type {
	case StoreBolt:
		if c.Store.Path == "" {
			bad("store-path", "is required for the bbolt store")
		}
	case StoreEtcd:
		if len(c.Store.Endpoints) == 0 {
			bad("etcd-servers", "at least one endpoint is required for the etcd store")
		}
		if (c.Store.CertFile == "") != (c.Store.KeyFile == "") {
			bad("etcd-certfile", "give --etcd-certfile and --etcd-keyfile together")
		}
	default:
		bad("store-type", "%q is not a store type (supported: %s, %s)", c.Store.Type, StoreBolt, StoreEtcd)
	}
	if c.AuditLogMaxSize <= 0 {
		bad("audit-log-maxsize", "must be positive: the audit log is rotated by size")
	}
	if c.AuditLogMaxBackups < 0 {
		bad("audit-log-maxbackup", "must not be negative")
	}
	if c.Cache.MaxEntries <= 0 {
		bad("cache-max-entries", "must be positive")
	}
	if c.Cache.Staleness.Duration <= 0 {
		bad("cache-staleness", "must be positive")
	}
	if c.PurgeInterval.Duration <= 0 {
		bad("purge-interval", "must be positive")
	}
	if c.Kubeconfig != "" && c.InCluster {
		bad("in-cluster", "give --kubeconfig or --in-cluster, not both")
	}
	if c.RequestHeader.ClientCAFile != "" && (len(c.RequestHeader.UsernameHeaders) == 0 || len(c.RequestHeader.GroupHeaders) == 0) {
		bad("requestheader-username-headers", "username and group headers are required with --requestheader-client-ca-file")
	}
	for name := range c.FeatureGates {
		if _, ok := KnownFeatureGates[name]; !ok {
			bad("feature-gates", "unknown feature gate %q (known: %s)", name, knownGates())
		}
	}
	if _, err := keys.ParseAlgorithm(c.KeyRotation.Algorithm); err != nil {
		bad("key-algorithm", "%v", err)
	}
	if c.KeyRotation.PropagationDelay.Duration < 0 || c.KeyRotation.Period.Duration < 0 {
		bad("key-propagation-delay", "durations must not be negative")
	}
	if p := c.KeyRotation.Period.Duration; p > 0 && p <= c.KeyRotation.PropagationDelay.Duration {
		bad("key-rotation-period", "%s must be longer than --key-propagation-delay", p)
	}
	if c.VNC.MinDuration.Duration <= 0 {
		bad("vnc-min-duration", "must be positive")
	}
	if m := c.VNC.MaxDuration.Duration; m != 0 && m < c.VNC.MinDuration.Duration {
		bad("vnc-max-duration", "%s is shorter than --vnc-min-duration", m)
	}
	if c.VNC.Audience == "" {
		bad("vnc-audience", "is required")
	}
	if c.UserTokens.MaxTTL.Duration <= 0 {
		bad("user-token-max-ttl", "must be positive")
	}
	if c.UserTokens.MaxPerUser < 0 {
		bad("user-token-max-per-user", "must not be negative")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log-level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log-format", "%q is not one of text, json", c.Log.Format)
	}
	return errors.Join(errs...)
}
