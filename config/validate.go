package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"portcullis.dev/portcullis/keys"
)

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
	switch kind, arg, _ := strings.Cut(c.KeyEncryption.Provider, ":"); {
	case kind == "file" && arg != "":
	case kind == "kms" && strings.HasPrefix(arg, "unix://"):
	default:
		bad("key-encryption-provider", "%q: expected file:PATH or kms:unix:///PATH.sock", c.KeyEncryption.Provider)
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
