package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/natefinch/lumberjack.v2"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/metrics"
	"portcullis.dev/portcullis/store"
)

// observer feeds metrics and the audit log from the hooks of the webhook,
// the minting core and the cache. The audit log never sees a token value:
// the hooks carry records and results, not tokens.
type observer struct {
	metrics *metrics.Metrics
	audit   *slog.Logger
}

// caller names who made a request, for the audit log.
func caller(ctx context.Context) string {
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		return u.GetName()
	}
	return ""
}

// ObserveReview implements authn.Observer. Every review is counted; only
// refusals of well-formed tokens of ours (their signature verified, so a
// jti is known: revoked, expired, disabled, wrong audience...) are audited,
// as those are decisions people act on. Junk that anyone can make
// kube-apiserver forward is only counted, so it cannot flood the audit log.
func (o *observer) ObserveReview(_ context.Context, res authn.Result, err error, d time.Duration) {
	switch {
	case err != nil:
		o.metrics.ObserveReview("undecided", "", d)
	case res.Authenticated():
		o.metrics.ObserveReview("authenticated", "", d)
	default:
		o.metrics.ObserveReview("refused", string(res.Reason), d)
		if res.JTI != "" {
			o.audit.Info("review refused", "event", "review-refused", "reason", string(res.Reason), "jti", res.JTI)
		}
	}
}

func (o *observer) minted(ctx context.Context, r *store.Record) {
	o.metrics.ObserveMint(string(r.Kind))
	o.audit.Info("token minted", "event", "mint", "kind", string(r.Kind), "jti", r.JTI, "subject", r.Subject,
		"expiresAt", r.ExpiresAt, "by", caller(ctx))
}

func (o *observer) revoked(ctx context.Context, rev *store.Revocation) {
	o.metrics.ObserveRevocation(string(rev.Scope))
	o.audit.Info("revoked", "event", "revoke", "scope", string(rev.Scope), "target", rev.Target, "name", rev.Name,
		"reason", rev.Reason, "by", caller(ctx))
}

// newAuditLogger writes JSON lines to path ("-": stdout; "": nowhere),
// rotating the file at maxSizeMB and keeping maxBackups rotated files
// (lumberjack, as kube-apiserver rotates its audit log).
func newAuditLogger(path string, maxSizeMB, maxBackups int) (*slog.Logger, io.Closer, error) {
	var w io.Writer = io.Discard
	var closer io.Closer = io.NopCloser(nil)
	switch path {
	case "":
	case "-":
		w = os.Stdout
	default:
		// Created 0600 before lumberjack opens it (it keeps the mode of a
		// file that exists), and checked to be writable now, not at the
		// first event.
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("serve: audit log: %w", err)
		}
		f.Close()
		l := &lumberjack.Logger{Filename: path, MaxSize: maxSizeMB, MaxBackups: maxBackups}
		w, closer = l, l
	}
	return slog.New(slog.NewJSONHandler(w, nil)).With("log", "audit"), closer, nil
}

// registerMetrics registers the Portcullis metrics on the server's
// registry (the store's were registered when it was opened).
func (s *Server) registerMetrics() {
	metrics.RegisterState(s.registry, metrics.State{
		TokenCache:  s.verifier.CacheStats,
		RecordCache: s.revocations.RecordCacheStats,
		SyncAge:     s.revocations.SyncAge,
		Keys:        s.ring.Keys,
		CertificateExpiry: func() time.Time {
			c := s.cert.current.Load()
			if c == nil || len(c.Certificate) == 0 {
				return time.Time{}
			}
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				return time.Time{}
			}
			return leaf.NotAfter
		},
	})
}

// metricsHandler serves /metrics and the health endpoints on the metrics listener.
func (s *Server) metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.addHealth(mux)
	return mux
}
