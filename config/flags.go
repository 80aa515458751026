package config

import (
	"sort"
	"strings"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
)

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
	fs.StringVar(&c.KeysDir, "keys-dir", c.KeysDir, "Key directory of an earlier version, imported into the store once when the store holds no ring.")
	fs.StringVar(&c.KeyEncryption.Provider, "key-encryption-provider", c.KeyEncryption.Provider, "Seals the signing keys in the store: file:PATH (32-byte AES-256 key, mode 0600) or kms:unix:///PATH.sock (a Kubernetes KMS v2 plugin).")
	fs.DurationVar(&c.KeyEncryption.Timeout.Duration, "key-encryption-timeout", c.KeyEncryption.Timeout.Duration, "Bound on one call to the KMS plugin.")
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
