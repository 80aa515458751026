package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/console"
	"portcullis.dev/portcullis/metrics"
	"portcullis.dev/portcullis/token"
)

// VNCProxyOptions are `portcullis vnc-proxy`'s flags.
type VNCProxyOptions struct {
	BindAddress    string
	MetricsAddress string
	CertFile       string
	KeyFile        string
	Backend        string
	// KubeVirtKubeconfig is the kubeconfig of the kubevirt backend (empty:
	// the in-cluster ServiceAccount).
	KubeVirtKubeconfig string
	// WebhookKubeconfig selects the online verifier: every check is a
	// TokenReview through Portcullis' webhook.
	WebhookKubeconfig string
	// IssuerKubeconfig is the issuer API: where single-use tokens are
	// claimed, and, without WebhookKubeconfig, the offline verifier's JWKS
	// and revocation watch, with Issuer as the tokens' iss.
	IssuerKubeconfig string
	Issuer           string
	Audience         string
	AllowedOrigins   []string
	Recheck          time.Duration
	Log              string
}

// AddFlags binds the options to fs.
func (o *VNCProxyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.BindAddress, "bind-address", ":8443", "HOST:PORT the proxy serves TLS websockets on.")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", "", "HOST:PORT for /metrics, /healthz and /readyz over plain HTTP (empty: not served).")
	fs.StringVar(&o.CertFile, "tls-cert-file", "", "Serving certificate (PEM).")
	fs.StringVar(&o.KeyFile, "tls-private-key-file", "", "Serving key (PEM).")
	fs.StringVar(&o.Backend, "backend", "", "Where VNC consoles are: kubevirt (KubeVirt's virtualmachineinstances/vnc websocket on kube-apiserver, with the proxy's own credentials) or map:FILE (a YAML map of NAMESPACE/VM to tcp:HOST:PORT or unix:/PATH).")
	fs.StringVar(&o.KubeVirtKubeconfig, "kubevirt-kubeconfig", "", "The kubevirt backend's kubeconfig (default: the in-cluster ServiceAccount). RBAC must let it get subresources.kubevirt.io virtualmachineinstances/vnc.")
	fs.StringVar(&o.WebhookKubeconfig, "webhook-kubeconfig", "", "Online verification: the kubeconfig of Portcullis' webhook (init writes webhook.kubeconfig).")
	fs.StringVar(&o.IssuerKubeconfig, "issuer-kubeconfig", "", "A kubeconfig for the issuer API: single-use tokens are claimed there (create on tokenclaims); without --webhook-kubeconfig, offline verification too (JWKS, and get/list/watch on revocations). Without it, single-use tokens are refused.")
	fs.StringVar(&o.Issuer, "issuer", "", "Offline verification: the tokens' iss.")
	fs.StringVar(&o.Audience, "audience", token.VNCAudience, "VNC audience.")
	fs.StringSliceVar(&o.AllowedOrigins, "allowed-origin", nil, "Browser origin (https://host[:port]) allowed besides the proxy's own; repeatable.")
	fs.DurationVar(&o.Recheck, "recheck-interval", console.DefaultRecheck, "How often a live session's token is checked again.")
	fs.StringVar(&o.Log, "log-level", "info", "debug, info, warn or error.")
}

// Validate checks the options.
func (o *VNCProxyOptions) Validate() error {
	var errs []error
	if o.CertFile == "" || o.KeyFile == "" {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required"))
	}
	switch {
	case o.Backend == "kubevirt":
	case strings.HasPrefix(o.Backend, "map:") && len(o.Backend) > len("map:"):
		if o.KubeVirtKubeconfig != "" {
			errs = append(errs, errors.New("--kubevirt-kubeconfig is for --backend kubevirt"))
		}
	default:
		errs = append(errs, fmt.Errorf("--backend %q: give kubevirt or map:FILE", o.Backend))
	}
	switch {
	case o.WebhookKubeconfig == "" && o.IssuerKubeconfig == "":
		errs = append(errs, errors.New("give --webhook-kubeconfig (online verification) or --issuer-kubeconfig (offline verification)"))
	case o.WebhookKubeconfig == "" && o.Issuer == "":
		errs = append(errs, errors.New("--issuer is required for offline verification (--issuer-kubeconfig without --webhook-kubeconfig)"))
	}
	if o.Recheck <= 0 {
		errs = append(errs, errors.New("--recheck-interval must be positive"))
	}
	return errors.Join(errs...)
}

// VNCProxy is a running `portcullis vnc-proxy`.
type VNCProxy struct {
	proxy    *console.Proxy
	server   *http.Server
	listener net.Listener
	metrics  *http.Server
	// ready reports whether the verifier can answer (offline: the
	// revocations were listed once).
	ready    func() bool
	metricsL net.Listener
	closers  []func()
}

// Addr is the address the proxy serves on.
func (p *VNCProxy) Addr() net.Addr { return p.listener.Addr() }

// MetricsAddr is the address of /metrics, /healthz and /readyz (nil when
// not served).
func (p *VNCProxy) MetricsAddr() net.Addr {
	if p.metricsL == nil {
		return nil
	}
	return p.metricsL.Addr()
}

// NewVNCProxy builds the proxy and binds its listeners; Run serves them.
// ctx bounds the offline verifier's watches.
func NewVNCProxy(ctx context.Context, o *VNCProxyOptions, log, audit *slog.Logger, clk clock.WithTicker) (_ *VNCProxy, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	p := &VNCProxy{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	backend, err := consoleBackend(o)
	if err != nil {
		return nil, err
	}
	verifier, err := p.verifier(ctx, o, clk)
	if err != nil {
		return nil, err
	}
	var claimer console.Claimer
	if o.IssuerKubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.IssuerKubeconfig)
		if err != nil {
			return nil, fmt.Errorf("vnc-proxy: %w", err)
		}
		if claimer, err = vncproxy.NewClaims(cfg, o.Audience); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	p.proxy, err = console.New(console.Options{
		Verifier: verifier, Backend: backend, Claimer: claimer, AllowedOrigins: o.AllowedOrigins, Recheck: o.Recheck,
		Clock: clk, Log: log, Audit: audit, Metrics: metrics.NewConsole(reg),
	})
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("vnc-proxy: serving certificate: %w", err)
	}
	if p.listener, err = net.Listen("tcp", o.BindAddress); err != nil {
		return nil, fmt.Errorf("vnc-proxy: %w", err)
	}
	p.server = &http.Server{
		Handler:           p.proxy.Handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if o.MetricsAddress != "" {
		if p.metricsL, err = net.Listen("tcp", o.MetricsAddress); err != nil {
			return nil, fmt.Errorf("vnc-proxy: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
		mux.HandleFunc("GET /readyz", p.serveReadyz)
		p.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	return p, nil
}

// consoleBackend is where --backend says the consoles are.
func consoleBackend(o *VNCProxyOptions) (console.Backend, error) {
	if o.Backend != "kubevirt" {
		return console.LoadMap(strings.TrimPrefix(o.Backend, "map:"))
	}
	var cfg *rest.Config
	var err error
	if o.KubeVirtKubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.KubeVirtKubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("vnc-proxy: kubevirt backend: %w", err)
	}
	cfg.UserAgent = "portcullis-vnc-proxy"
	return console.NewKubeVirt(cfg)
}

func (p *VNCProxy) verifier(ctx context.Context, o *VNCProxyOptions, clk clock.PassiveClock) (console.Verifier, error) {
	if o.WebhookKubeconfig != "" {
		// A good answer is reused for less than a recheck interval, so
		// every recheck reaches Portcullis.
		c, err := vncproxy.New(vncproxy.Config{WebhookKubeconfig: o.WebhookKubeconfig, Audience: o.Audience, CacheTTL: o.Recheck / 2})
		if err != nil {
			return nil, err
		}
		p.closers = append(p.closers, c.Close)
		return c, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.IssuerKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("vnc-proxy: %w", err)
	}
	offline, err := vncproxy.NewOffline(ctx, vncproxy.OfflineConfig{Issuer: cfg, Iss: o.Issuer, Audience: o.Audience, Clock: clk})
	if err != nil {
		return nil, err
	}
	p.ready = offline.Synced
	return offline, nil
}

// serveReadyz answers 200 once the verifier can answer: online at once,
// offline when the revocations were listed.
func (p *VNCProxy) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	if p.ready != nil && !p.ready() {
		http.Error(w, "revocations not listed yet", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok")
}

// Run serves until ctx is done, then ends every session.
func (p *VNCProxy) Run(ctx context.Context) error {
	defer p.close()
	errs := make(chan error, 2)
	go func() { errs <- p.server.ServeTLS(p.listener, "", "") }()
	if p.metrics != nil {
		go func() { errs <- p.metrics.Serve(p.metricsL) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return fmt.Errorf("vnc-proxy: %w", err)
	}
	p.proxy.Shutdown()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.server.Shutdown(shutdown)
	if p.metrics != nil {
		p.metrics.Shutdown(shutdown)
	}
	return nil
}

func (p *VNCProxy) close() {
	if p.listener != nil {
		p.listener.Close()
	}
	if p.metricsL != nil {
		p.metricsL.Close()
	}
	for _, c := range p.closers {
		c()
	}
}
