// Package vncproxy lets a VNC proxy ask Portcullis "is this token good for
// this VM?": a TokenReview with the VNC audience through the webhook (with
// kube-apiserver's own client), and a bounded cache of good answers.
package vncproxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"

	tokenfmt "portcullis.dev/portcullis/token"
)

// Errors a check answers with.
var (
	// ErrNotAuthenticated: the token is invalid, expired or revoked.
	ErrNotAuthenticated = errors.New("vncproxy: token is not authenticated (invalid, expired or revoked)")
	// ErrOtherVM: the token is good, but for another VM.
	ErrOtherVM = errors.New("vncproxy: token is for another VM")
)

// Config configures a Checker.
type Config struct {
	// WebhookKubeconfig is the kubeconfig of Portcullis' webhook, as
	// `portcullis init` writes it for kube-apiserver.
	WebhookKubeconfig string
	// Audience is the VNC audience (default token.kubevirt.io/vnc).
	Audience string
	// CacheTTL is how long a good answer is reused: the longest a revoked
	// token still opens a console through this proxy (default 10s).
	CacheTTL time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int64
}

// Checker checks VNC tokens for VMs. It is safe for concurrent use.
type Checker struct {
	reviewer authenticator.Token
	audience string
	ttl      time.Duration
	cache    *ristretto.Cache[string, string]
	hmacKey  []byte
}

// New returns a Checker reviewing through the webhook of cfg.
func New(cfg Config) (*Checker, error) {
	rc, err := webhookutil.LoadKubeconfig(cfg.WebhookKubeconfig, nil)
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	wh, err := webhook.New(rc, "v1", nil, wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Steps: 3})
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	return NewWithReviewer(wh, cfg)
}

// NewWithReviewer is New with any token authenticator doing the review.
func NewWithReviewer(reviewer authenticator.Token, cfg Config) (*Checker, error) {
	if cfg.Audience == "" {
		cfg.Audience = tokenfmt.VNCAudience
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 10 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10_000
	}
	cache, err := ristretto.NewCache(&ristretto.Config[string, string]{
		NumCounters: 10 * cfg.MaxEntries, MaxCost: cfg.MaxEntries, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, fmt.Errorf("vncproxy: %w", err)
	}
	return &Checker{reviewer: reviewer, audience: cfg.Audience, ttl: cfg.CacheTTL, cache: cache, hmacKey: key}, nil
}

// Close releases the cache.
func (c *Checker) Close() { c.cache.Close() }

// Check returns nil if token opens the console of VM namespace/name. An
// error other than ErrNotAuthenticated or ErrOtherVM means Portcullis could
// not be asked: refuse the connection (fail closed).
func (c *Checker) Check(ctx context.Context, token, namespace, name string) error {
	vm := namespace + "/" + name
	key := c.tokenKey(token)
	if got, ok := c.cache.Get(key); ok {
		if got != vm {
			return ErrOtherVM
		}
		return nil
	}
	ctx = authenticator.WithAudiences(ctx, authenticator.Audiences{c.audience})
	resp, ok, err := c.reviewer.AuthenticateToken(ctx, token)
	if err != nil {
		return fmt.Errorf("vncproxy: review: %w", err)
	}
	if !ok || !slices.Contains(resp.Audiences, c.audience) {
		return ErrNotAuthenticated
	}
	extra := resp.User.GetExtra()
	if len(extra[tokenfmt.ExtraVMNamespace]) != 1 || len(extra[tokenfmt.ExtraVMName]) != 1 {
		return ErrNotAuthenticated // not a VNC token
	}
	tokenVM := extra[tokenfmt.ExtraVMNamespace][0] + "/" + extra[tokenfmt.ExtraVMName][0]
	c.cache.SetWithTTL(key, tokenVM, 1, c.ttl)
	if tokenVM != vm {
		return ErrOtherVM
	}
	return nil
}

// tokenKey keeps tokens out of the cache: an HMAC under a per-process key.
func (c *Checker) tokenKey(token string) string {
	h := hmac.New(sha256.New, c.hmacKey)
	io.WriteString(h, token)
	return string(h.Sum(nil))
}
