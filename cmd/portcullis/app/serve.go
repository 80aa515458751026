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
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/healthz"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn"
	"portcullis.dev/portcullis/cache"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/issuer/server"
	"portcullis.dev/portcullis/issuer/tokenrequest"
	"portcullis.dev/portcullis/issuer/tokens"
	"portcullis.dev/portcullis/issuer/vnc"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/metrics"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/store/bolt"
	etcdstore "portcullis.dev/portcullis/store/etcd"
)

// storeLockTimeout is how long serve waits for another process to let go of
// the bbolt file before giving up.
const storeLockTimeout = 10 * time.Second

// Server is a running Portcullis: webhook, issuer and their shared parts.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	clock clock.PassiveClock
	store store.Store
	cache *cache.Cache
	ring  *keys.Ring
	// informers and metadataInformers watch the cluster in
	// cluster-connected mode (nil standalone).
	informers         informers.SharedInformerFactory
	metadataInformers metadatainformer.SharedInformerFactory
	keys              *keys.Manager
	cert              *servingCert
	clientCA          *dynamiccertificates.DynamicFileCAContent
	webhook           *http.Server
	issuer            *server.Server
	webhookL          net.Listener
	issuerL           net.Listener
	registry          *prometheus.Registry
	// metrics serves /metrics on its own listener (nil: disabled).
	metrics     *http.Server
	metricsL    net.Listener
	auditCloser io.Closer
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
func NewServer(cfg *config.Config, log *slog.Logger, clk clock.PassiveClock, random io.Reader) (*Server, error) {
	return newServer(cfg, log, clk, random, nil)
}

// newServer is NewServer with wrapStore, when set, put around the opened
// store: tests use it to put a fault between the server and a real store.
func newServer(cfg *config.Config, log *slog.Logger, clk clock.PassiveClock, random io.Reader, wrapStore func(store.Store) store.Store) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, clock: clk}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ringKeys, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	if s.ring, err = keys.NewRing(ringKeys); err != nil {
		return nil, err
	}
	alg, _ := keys.ParseAlgorithm(cfg.KeyRotation.Algorithm) // validated
	s.keys = keys.NewManager(s.ring, keys.ManagerOptions{
		Dir: cfg.KeysDir, Algorithm: alg, PropagationDelay: cfg.KeyRotation.PropagationDelay.Duration,
		RotationPeriod: cfg.KeyRotation.Period.Duration, Clock: clk, Rand: random, Logger: log.With("component", "keys"),
	})
	if s.store, err = openStore(cfg.Store); err != nil {
		return nil, err
	}
	if wrapStore != nil {
		s.store = wrapStore(s.store)
	}
	s.registry = prometheus.NewRegistry()
	s.store = metrics.InstrumentStore(s.store, s.registry)
	s.cache, err = cache.New(s.store, cache.Options{
		MaxEntries: cfg.Cache.MaxEntries, RecordTTL: cfg.Cache.Staleness.Duration, Clock: clk, Rand: random,
		Shared: cfg.Store.Type == config.StoreEtcd,
		// A subject mark outlives every token it can refuse (leeway included).
		SubjectMarkLifetime: cfg.LongestTokenLifetime() + authn.DefaultLeeway,
	})
	if err != nil {
		return nil, err
	}
	if err := s.cache.Load(context.Background()); err != nil {
		return nil, err
	}
	minter := issuer.NewMinter(cfg.Issuer, s.ring, s.cache, clk, random)
	kube, err := kubeClients(cfg)
	if err != nil {
		return nil, err
	}
	var bindings authn.Bindings
	if kube != nil {
		bindings = s.watchBindings(kube, log)
	}
	verifier := authn.NewVerifier(s.ring, s.cache, authn.VerifierOptions{
		Issuer: cfg.Issuer, APIAudiences: cfg.APIAudiences, Clock: clk, Logger: log.With("component", "verifier"), Bindings: bindings,
	})

	if s.cert, err = newServingCert(cfg.TLS.CertFile, cfg.TLS.PrivateKeyFile); err != nil {
		return nil, err
	}
	if s.clientCA, err = dynamiccertificates.NewDynamicCAContentFromFile("webhook-client-ca", cfg.TLS.WebhookClientCAFile); err != nil {
		return nil, fmt.Errorf("serve: --webhook-client-ca-file: %w", err)
	}
	audit, auditCloser, err := newAuditLogger(cfg.AuditLogPath, cfg.AuditLogMaxSize, cfg.AuditLogMaxBackups)
	if err != nil {
		return nil, err
	}
	s.auditCloser = auditCloser
	reg, m := s.registry, s.registerMetrics()
	obs := &observer{metrics: m, audit: audit}
	minter.OnMint(obs.minted)
	s.cache.OnRevoke(obs.revoked)
	s.keys.SetAudit(audit)
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
		s.metrics = &http.Server{Handler: s.metricsHandler(reg), ReadHeaderTimeout: 5 * time.Second}
	}
	if s.webhookL, err = net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.WebhookPort))); err != nil {
		return nil, fmt.Errorf("serve: webhook listener: %w", err)
	}
	if s.issuerL, err = net.Listen("tcp", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.SecurePort))); err != nil {
		return nil, fmt.Errorf("serve: issuer listener: %w", err)
	}
	vncOpts := vnc.Options{
		MinDuration: cfg.VNC.MinDuration.Duration, MaxDuration: cfg.VNC.MaxDuration.Duration,
		APIAudiences: cfg.APIAudiences, Audience: cfg.VNC.Audience,
	}
	var kubeClient kubernetes.Interface
	tokenRequest := tokenrequest.Options{APIAudiences: cfg.APIAudiences, MaxExpiration: cfg.MaxTokenExpiration.Duration}
	if kube != nil {
		kubeClient = kube.client
		vncOpts.Cluster = vnc.KubeCluster{Client: kube.client, Dynamic: kube.dynamic}
		tokenRequest.Cluster = tokenrequest.KubeCluster{Client: kube.client, Metadata: kube.metadata}
	}
	s.issuer, err = server.New(server.Options{
		Listener:     s.issuerL,
		CertFile:     cfg.TLS.CertFile,
		KeyFile:      cfg.TLS.PrivateKeyFile,
		ClientCAFile: cfg.TLS.ClientCAFile,
		RequestHeader: &genericoptions.RequestHeaderAuthenticationOptions{
			ClientCAFile:        cfg.RequestHeader.ClientCAFile,
			AllowedNames:        cfg.RequestHeader.AllowedNames,
			UsernameHeaders:     cfg.RequestHeader.UsernameHeaders,
			UIDHeaders:          cfg.RequestHeader.UIDHeaders,
			GroupHeaders:        cfg.RequestHeader.GroupHeaders,
			ExtraHeaderPrefixes: cfg.RequestHeader.ExtraHeaderPrefixes,
		},
		Kube:               kubeClient,
		APIAudiences:       cfg.APIAudiences,
		AdminGroups:        cfg.AdminGroups,
		TokenAuthenticator: verifier,
		Minter:             minter,
		TokenRequest:       tokenRequest,
		Revoker:            s.cache,
		Keys:               s.keys,
		VNC:                vncOpts,
		Records:            s.cache,
		Issuer:             cfg.Issuer,
		UserTokens:         userTokens(cfg, s.cache),
		UserTokenOptions: tokens.Options{
			MaxTTL: cfg.UserTokens.MaxTTL.Duration, MaxPerUser: cfg.UserTokens.MaxPerUser, APIAudiences: cfg.APIAudiences,
		},
		Version: Version,
		ReadyChecks: []healthz.HealthChecker{
			healthz.NamedCheck("store", s.storeReady), healthz.NamedCheck("signing-key", s.keyReady),
			healthz.NamedCheck("revocations-current", s.revocationsCurrent),
		},
		Clock: clk,
		Rand:  random,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// userTokens is what serves the user Token API, nil when the UserTokens
// feature gate is off (the group is then absent from discovery).
func userTokens(cfg *config.Config, c *cache.Cache) tokens.Records {
	if !cfg.Enabled(config.UserTokens) {
		return nil
	}
	return c
}

// openStore opens the configured store backend.
func openStore(c config.Store) (store.Store, error) {
	if c.Type != config.StoreEtcd {
		return bolt.Open(c.Path, storeLockTimeout)
	}
	cfg := clientv3.Config{
		Endpoints: c.Endpoints, DialTimeout: 10 * time.Second,
		// gRPC's default reconnect backoff grows to two minutes; a token
		// authority must be back within seconds of its store.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	}
	if c.CAFile != "" || c.CertFile != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
		tlsCfg, err := tlsInfo.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("serve: etcd TLS: %w", err)
		}
		cfg.TLS = tlsCfg
	}
	return etcdstore.Dial(cfg, c.Prefix)
}

// kube is the clients of cluster-connected mode.
type kube struct {
	client   kubernetes.Interface
	dynamic  dynamic.Interface
	metadata metadata.Interface
}

// kubeClients returns the clients of cluster-connected mode, nil when standalone.
func kubeClients(cfg *config.Config) (*kube, error) {
	rc, err := cfg.RESTConfig()
	if err != nil || rc == nil {
		return nil, err
	}
	rc.UserAgent = "portcullis/" + Version
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	d, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	m, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &kube{client: c, dynamic: d, metadata: m}, nil
}

// watchBindings starts nothing yet: it sets up the informers that reviews
// check bound tokens against (cluster-connected mode) — every
// ServiceAccount, and the metadata of Pods, Secrets and Nodes (never secret
// data) — and returns what checks them. Each deletion of a <vm>-vnc-access
// ServiceAccount Portcullis created is also written as a durable "not
// before" mark on the VM's identity, so offline verifiers watching
// revocations learn of it too.
func (s *Server) watchBindings(k *kube, log *slog.Logger) authn.Bindings {
	s.informers = informers.NewSharedInformerFactory(k.client, 0)
	s.metadataInformers = metadatainformer.NewSharedInformerFactory(k.metadata, 0)
	sas := s.informers.Core().V1().ServiceAccounts().Informer()
	_, _ = sas.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		sa, ok := obj.(*corev1.ServiceAccount)
		if !ok || sa.Labels[vnc.ManagedByLabel] != "portcullis" {
			return
		}
		subject := serviceaccount.MakeUsername(sa.Namespace, sa.Name)
		rev := &store.Revocation{Name: "sa-" + string(sa.UID), UID: string(sa.UID), Scope: store.ScopeSubject, Target: subject,
			Reason: "ServiceAccount deleted", RevokedBy: "portcullis", Created: s.clock.Now()}
		if err := s.cache.Revoke(context.Background(), rev); err != nil && !errors.Is(err, store.ErrExists) {
			log.Error("recording the deletion of a VNC ServiceAccount failed", "serviceaccount", sa.Namespace+"/"+sa.Name, "err", err)
		}
	}})
	listers := map[string]toolscache.GenericLister{
		"ServiceAccount": toolscache.NewGenericLister(sas.GetIndexer(), corev1.Resource("serviceaccounts")),
	}
	synced := []toolscache.InformerSynced{sas.HasSynced}
	for kind, gvr := range map[string]schema.GroupVersionResource{
		"Pod":    corev1.SchemeGroupVersion.WithResource("pods"),
		"Secret": tokenrequest.SecretsGVR,
		"Node":   corev1.SchemeGroupVersion.WithResource("nodes"),
	} {
		inf := s.metadataInformers.ForResource(gvr)
		listers[kind] = inf.Lister()
		synced = append(synced, inf.Informer().HasSynced)
	}
	return authn.ObjectBindings{Listers: listers, Synced: func() bool {
		for _, ok := range synced {
			if !ok() {
				return false
			}
		}
		return true
	}}
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
func (s *Server) revocationsCurrent(*http.Request) error { return s.cache.Fresh() }

// addHealth serves /healthz, /livez and /readyz on the webhook listener too,
// for probes that only reach that port.
func (s *Server) addHealth(mux *http.ServeMux) {
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/livez", ok)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := errors.Join(s.storeReady(r), s.keyReady(r), s.revocationsCurrent(r)); err != nil {
			s.log.WarnContext(r.Context(), "not ready", "err", err)
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
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
	g.Go(func() error { s.purgeLoop(ctx); return nil })
	g.Go(func() error { s.touchLoop(ctx); return nil })
	g.Go(func() error { s.cache.Run(ctx, s.log.With("component", "cache")); return nil })
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

// purgeLoop purges expired records every PurgeInterval.
func (s *Server) purgeLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.PurgeInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.cache.PurgeExpired(ctx)
			if err != nil {
				s.log.Warn("purge of expired records failed", "err", err)
				continue
			}
			s.log.Info("purged expired records", "records", n)
		}
	}
}

// keyStepInterval is how often key promotion and automatic rotation are
// checked, and the ring resynced from its directory.
const keyStepInterval = time.Second

// touchInterval is how often queued lastUsedAt times are written.
const touchInterval = 10 * time.Second

// touchLoop writes the tokens' lastUsedAt off the review path, and once
// more on shutdown.
func (s *Server) touchLoop(ctx context.Context) {
	t := time.NewTicker(touchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.cache.FlushTouches(context.Background()); err != nil {
				s.log.Warn("writing lastUsedAt failed", "err", err)
			}
			return
		case <-t.C:
			if err := s.cache.FlushTouches(ctx); err != nil {
				s.log.Warn("writing lastUsedAt failed", "err", err)
			}
		}
	}
}

func (s *Server) close() {
	if s.cache != nil {
		s.cache.Close()
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
