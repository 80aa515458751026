package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/issuer/claims"
	"portcullis.dev/portcullis/issuer/server"
	"portcullis.dev/portcullis/issuer/tokenrequest"
	"portcullis.dev/portcullis/issuer/vnc"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/metrics"
	"portcullis.dev/portcullis/revocation"
	"portcullis.dev/portcullis/store"
)

// Server is a running Portcullis: webhook, issuer and their shared parts.
type Server struct {
	cfg         *config.Config
	log         *slog.Logger
	clock       clock.PassiveClock
	store       store.Store
	revocations *revocation.Authority
	verifier    *authn.Verifier
	ring        *keys.Ring
	// informers and metadataInformers watch the cluster in
	// cluster-connected mode (nil standalone).
	informers         informers.SharedInformerFactory
	metadataInformers metadatainformer.SharedInformerFactory
	keys              *keys.Manager
	// stopKeys ends the connection to the KMS plugin.
	stopKeys context.CancelFunc
	cert     *servingCert
	clientCA *dynamiccertificates.DynamicFileCAContent
	webhook  *http.Server
	issuer   *server.Server
	webhookL net.Listener
	issuerL  net.Listener
	registry *prometheus.Registry
	// metrics serves /metrics on its own listener (nil: disabled).
	metrics     *http.Server
	metricsL    net.Listener
	auditCloser io.Closer
}

// loadKeys opens the key-encryption provider and loads the ring from the
// store: importing the key directory of an earlier version, or making the
// first key, when the store holds none. A sealed signing key (the KMS
// plugin does not answer) does not stop the server: it verifies, and the
// key is unsealed once the plugin answers.
func (s *Server) loadKeys(c *config.Completed, audit *slog.Logger, random io.Reader) error {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopKeys = cancel
	enc, err := keys.OpenEncryption(ctx, c.KeyEncryption.Provider, c.KeyEncryption.Timeout.Duration, random)
	if err != nil {
		return fmt.Errorf("serve: --key-encryption-provider: %w", err)
	}
	c.Keys.Store, c.Keys.Encryption, c.Keys.Audit = s.store, enc, audit
	c.Keys.Clock, c.Keys.Rand, c.Keys.Logger = s.clock, random, s.log.With("component", "keys")
	if s.ring, err = keys.NewRing(nil); err != nil {
		return err
	}
	s.keys = keys.NewManager(s.ring, c.Keys)
	loadCtx, cancelLoad := context.WithTimeout(ctx, 30*time.Second)
	defer cancelLoad()
	err = s.keys.Load(loadCtx, c.KeysDir)
	if errors.Is(err, keys.ErrSealed) {
		s.log.Warn("the signing key is sealed and the key-encryption provider does not answer: reviews go on, minting answers 503 until it does", "err", err)
		return nil
	}
	return err
}

// MetricsAddr is where /metrics is served (nil when disabled).
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsL == nil {
		return nil
	}
	return s.metricsL.Addr()
}

// NewServer opens the store, loads the key ring and the revocation index,
// and binds both listeners. Run serves them.
func NewServer(cfg *config.Config, log *slog.Logger, clk clock.PassiveClock, random io.Reader, opts ...ServerOption) (*Server, error) {
	var o serverOptions
	for _, opt := range opts {
		opt(&o)
	}
	return newServer(cfg, log, clk, random, o.wrapStore)
}

// ServerOption changes how NewServer builds a server; for tests and
// benchmarks, never set by the command line.
type ServerOption func(*serverOptions)

type serverOptions struct {
	wrapStore func(store.Store) store.Store
}

// WithStoreWrapper puts wrap around the opened store, beneath the server's
// metrics: benchmarks use it to measure the same requests on a store that
// does not write.
func WithStoreWrapper(wrap func(store.Store) store.Store) ServerOption {
	return func(o *serverOptions) { o.wrapStore = wrap }
}

// newServer is NewServer with wrapStore, when set, put around the opened
// store: tests use it to put a fault between the server and a real store.
func newServer(cfg *config.Config, log *slog.Logger, clk clock.PassiveClock, random io.Reader, wrapStore func(store.Store) store.Store) (_ *Server, err error) {
	c, err := cfg.Complete()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, clock: clk}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.store, err = openStore(cfg.Store); err != nil {
		return nil, err
	}
	if wrapStore != nil {
		s.store = wrapStore(s.store)
	}
	s.registry = prometheus.NewRegistry()
	s.store = metrics.InstrumentStore(s.store, s.registry)
	audit, auditCloser, err := newAuditLogger(cfg.AuditLogPath, cfg.AuditLogMaxSize, cfg.AuditLogMaxBackups)
	if err != nil {
		return nil, err
	}
	s.auditCloser = auditCloser
	if err := s.loadKeys(c, audit, random); err != nil {
		return nil, err
	}
	obs := &observer{metrics: metrics.New(s.registry), audit: audit}
	c.Revocation.Clock, c.Revocation.Logger, c.Revocation.OnRevoke = clk, log.With("component", "revocation"), obs.revoked
	if s.revocations, err = revocation.New(s.store, c.Revocation); err != nil {
		return nil, err
	}
	if err := s.revocations.Load(context.Background()); err != nil {
		return nil, err
	}
	minter := issuer.NewMinter(cfg.Issuer, s.ring, s.revocations, clk, random)
	kube, err := kubeClients(cfg)
	if err != nil {
		return nil, err
	}
	var bindings authn.Bindings
	if kube != nil {
		bindings = s.watchBindings(kube, log)
	}
	c.Verifier.Clock, c.Verifier.Logger, c.Verifier.Bindings, c.Verifier.Rand = clk, log.With("component", "verifier"), bindings, random
	if s.verifier, err = authn.NewVerifier(s.ring, s.revocations, c.Verifier); err != nil {
		return nil, err
	}
	verifier := s.verifier

	if s.cert, err = newServingCert(cfg.TLS.CertFile, cfg.TLS.PrivateKeyFile); err != nil {
		return nil, err
	}
	if s.clientCA, err = dynamiccertificates.NewDynamicCAContentFromFile("webhook-client-ca", cfg.TLS.WebhookClientCAFile); err != nil {
		return nil, fmt.Errorf("serve: --webhook-client-ca-file: %w", err)
	}
	s.registerMetrics()
	minter.OnMint(obs.minted)
	mux := http.NewServeMux()
	mux.Handle("/authenticate", authn.NewWebhookHandler(verifier, authn.DefaultMaxBodyBytes, obs, log.With("component", "webhook")))
	s.addHealth(mux)
	s.webhook = &http.Server{
		Handler:           mux,
		TLSConfig:         webhookTLS(s.cert, s.clientCA, cfg.WebhookAllowedNames),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      35 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "webhook").Handler(), slog.LevelDebug),
	}
	if cfg.MetricsPort >= 0 {
		if s.metricsL, err = net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.MetricsPort))); err != nil {
			return nil, fmt.Errorf("serve: metrics listener: %w", err)
		}
		s.metrics = &http.Server{Handler: s.metricsHandler(s.registry), ReadHeaderTimeout: 5 * time.Second}
	}
	if s.webhookL, err = net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.WebhookPort))); err != nil {
		return nil, fmt.Errorf("serve: webhook listener: %w", err)
	}
	if s.issuerL, err = net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.SecurePort))); err != nil {
		return nil, fmt.Errorf("serve: issuer listener: %w", err)
	}
	var kubeClient kubernetes.Interface
	if kube != nil {
		kubeClient = kube.client
		c.VNC.Cluster = vnc.KubeCluster{Client: kube.client, Dynamic: kube.dynamic}
		c.TokenRequest.Cluster = tokenrequest.KubeCluster{Client: kube.client, Metadata: kube.metadata}
	}
	s.issuer, err = server.New(server.Options{
		Listener:           s.issuerL,
		CertFile:           cfg.TLS.CertFile,
		KeyFile:            cfg.TLS.PrivateKeyFile,
		ClientCAFile:       cfg.TLS.ClientCAFile,
		RequestHeader:      c.RequestHeader,
		Kube:               kubeClient,
		APIAudiences:       cfg.APIAudiences,
		AdminGroups:        cfg.AdminGroups,
		TokenAuthenticator: verifier,
		Minter:             minter,
		TokenRequest:       c.TokenRequest,
		Revoker:            s.revocations,
		Claims:             claims.New(verifier, s.revocations, cfg.VNC.Audience, clk),
		Keys:               s.keys,
		VNC:                c.VNC,
		Records:            s.revocations,
		Issuer:             cfg.Issuer,
		UserTokens:         userTokens(cfg, s.revocations),
		UserTokenOptions:   c.UserTokens,
		Version:            Version,
		ReadyChecks:        s.readyChecks(),
		Clock:              clk,
		Rand:               random,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// WebhookAddr is where the webhook listens.
func (s *Server) WebhookAddr() net.Addr { return s.webhookL.Addr() }

// IssuerAddr is where the issuer API listens.
func (s *Server) IssuerAddr() net.Addr { return s.issuerL.Addr() }

// readyTimeout bounds the store's readiness check: a store that cannot
// answer quickly is not ready.
const readyTimeout = 2 * time.Second

func (s *Server) storeReady(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	return s.store.Ready(ctx)
}

func (s *Server) keyReady(*http.Request) error {
	_, err := s.ring.Signer()
	return err
}

// revocationsCurrent fails while the store's watch has not proven this
// replica's revocations current within the staleness bound: its reviews
// then fail closed, so it must not take traffic.
func (s *Server) revocationsCurrent(*http.Request) error { return s.revocations.Fresh() }

// readyChecks are what /readyz checks on every listener.
func (s *Server) readyChecks() []healthz.HealthChecker {
	return []healthz.HealthChecker{
		healthz.NamedCheck("store", s.storeReady), healthz.NamedCheck("signing-key", s.keyReady),
		healthz.NamedCheck("revocations-current", s.revocationsCurrent),
	}
}

// addHealth serves /healthz, /livez and /readyz (with a path per check, as
// kube-apiserver does) on the webhook and metrics listeners too, for probes
// that only reach those ports.
func (s *Server) addHealth(mux *http.ServeMux) {
	healthz.InstallHandler(mux)
	healthz.InstallLivezHandler(mux)
	healthz.InstallReadyzHandler(mux, s.readyChecks()...)
}

// Run serves until ctx is done, then shuts down within the grace period.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.cert.run(ctx); return nil })
	if err := s.clientCA.RunOnce(ctx); err != nil {
		return fmt.Errorf("serve: webhook client CA: %w", err)
	}
	g.Go(func() error { s.clientCA.Run(ctx, 1); return nil })
	g.Go(func() error {
		err := s.webhook.ServeTLS(s.webhookL, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve: webhook: %w", err)
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGracePeriod.Duration)
		defer cancel()
		return s.webhook.Shutdown(shutdownCtx)
	})
	g.Go(func() error { return s.issuer.Run(ctx) })
	if s.metrics != nil {
		g.Go(func() error {
			if err := s.metrics.Serve(s.metricsL); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: metrics: %w", err)
			}
			return nil
		})
		g.Go(func() error { <-ctx.Done(); return s.metrics.Close() })
	}
	g.Go(func() error { s.revocations.Run(ctx); return nil })
	g.Go(func() error { s.keys.Run(ctx, keyStepInterval); return nil })
	if s.informers != nil {
		s.informers.Start(ctx.Done())
		defer s.informers.Shutdown()
		s.metadataInformers.Start(ctx.Done())
		defer s.metadataInformers.Shutdown()
	}
	s.log.Info("serving", "webhook", s.WebhookAddr().String(), "issuer", s.IssuerAddr().String())
	return g.Wait()
}

// keyStepInterval is how often key promotion and automatic rotation are
// checked, and the ring resynced from its directory.
const keyStepInterval = time.Second

func (s *Server) close() {
	if s.stopKeys != nil {
		s.stopKeys()
	}
	if s.verifier != nil {
		s.verifier.Close()
	}
	if s.revocations != nil {
		s.revocations.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
	if s.auditCloser != nil {
		s.auditCloser.Close()
	}
	for _, l := range []net.Listener{s.webhookL, s.issuerL, s.metricsL} {
		if l != nil {
			l.Close()
		}
	}
}

// NewLogger builds the process logger from the config and routes klog (the
// Kubernetes libraries' logger) into it.
func NewLogger(out io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(out, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(out, opts)
	}
	log := slog.New(h)
	klog.SetSlogLogger(log)
	return log
}
