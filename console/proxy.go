// Package console is the VNC console proxy: it takes websocket connections
// for /vnc/{namespace}/{vm} carrying a VNC token, checks the token for that
// VM, relays the VM's RFB byte stream, and ends the session as soon as the
// token stops being good: revoked, its key retired, or expired.
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/metrics"
	tokenfmt "portcullis.dev/portcullis/token"
)

// Verifier checks a VNC token for a VM: vncproxy.Checker asks Portcullis'
// webhook, vncproxy.Offline checks against the JWKS and the revocation
// watch.
type Verifier interface {
	Check(ctx context.Context, token, namespace, name string) error
}

// Claimer uses up single-use tokens: vncproxy.Claims creates a TokenClaim
// at the issuer, so a token opens one session across every proxy.
type Claimer interface {
	// Claim returns nil the first time, vncproxy.ErrClaimed after.
	Claim(ctx context.Context, token string) error
}

// DefaultRecheck is how often a live session's token is checked again.
const DefaultRecheck = 250 * time.Millisecond

// DefaultUnavailableGrace is how long a live session outlasts a verifier
// that cannot answer before it is ended (fail closed).
const DefaultUnavailableGrace = 5 * time.Second

// Options configures a Proxy.
type Options struct {
	Verifier Verifier
	Backend  Backend
	// Claimer, when set, lets single-use tokens open their one session;
	// without it they are refused.
	Claimer Claimer
	// AllowedOrigins are browser origins (scheme://host[:port]) allowed
	// besides the proxy's own.
	AllowedOrigins []string
	// Recheck is how often a live session's token is checked again
	// (default DefaultRecheck): the longest a revoked token's session lives
	// on, plus the verifier's own delay.
	Recheck time.Duration
	// UnavailableGrace: see DefaultUnavailableGrace.
	UnavailableGrace time.Duration
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
	// Log gets operational messages, Audit a line per session opened and
	// per session ended by its token.
	Log, Audit *slog.Logger
	// Metrics, when set, counts sessions and bytes.
	Metrics *metrics.Console
}

// Proxy is the console proxy's HTTP handler.
type Proxy struct {
	opts     Options
	allowed  map[string]bool
	upgrader websocket.Upgrader

	mu       sync.Mutex
	sessions map[*session]struct{}
	closed   bool
}

// New returns a Proxy.
func New(o Options) (*Proxy, error) {
	if o.Verifier == nil || o.Backend == nil {
		return nil, errors.New("console: a verifier and a backend are required")
	}
	if o.Recheck <= 0 {
		o.Recheck = DefaultRecheck
	}
	if o.UnavailableGrace <= 0 {
		o.UnavailableGrace = DefaultUnavailableGrace
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Audit == nil {
		o.Audit = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{opts: o, allowed: map[string]bool{}, sessions: map[*session]struct{}{}}
	for _, origin := range o.AllowedOrigins {
		p.allowed[strings.ToLower(strings.TrimSuffix(origin, "/"))] = true
	}
	p.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		// Idle sessions hand their write buffer back.
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{DataProtocol},
		// Checked before the upgrade, with a clear answer.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	return p, nil
}

// Handler serves the console websocket (GET /vnc/{namespace}/{vm}), the
// browser console page (GET /console/{namespace}/{vm}) and its assets
// (GET /assets/).
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /vnc/{namespace}/{vm}", p.serveVNC)
	mux.HandleFunc("GET /console/{namespace}/{vm}", p.serveConsolePage)
	mux.Handle("GET /assets/", consoleAssets())
	return mux
}

// Shutdown ends every live session (close code 1001, going away).
func (p *Proxy) Shutdown() {
	p.mu.Lock()
	p.closed = true
	live := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		live = append(live, s)
	}
	p.mu.Unlock()
	for _, s := range live {
		s.end(endShutdown)
	}
}

func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	if p.opts.Metrics != nil {
		p.opts.Metrics.Refused.WithLabelValues(reason).Inc()
	}
	p.opts.Log.DebugContext(r.Context(), "console connection refused", "path", r.URL.Path, "reason", reason, "err", err)
	msg := http.StatusText(status)
	if status < 500 && err != nil {
		msg = err.Error()
	}
	http.Error(w, msg, status)
}

func (p *Proxy) serveVNC(w http.ResponseWriter, r *http.Request) {
	ns, vm := r.PathValue("namespace"), r.PathValue("vm")
	if !websocket.IsWebSocketUpgrade(r) {
		p.refuse(w, r, http.StatusBadRequest, refusedBadRequest, errNotWebsocket)
		return
	}
	token, err := tokenFrom(r)
	switch {
	case errors.Is(err, errTokenInURL):
		p.refuse(w, r, http.StatusBadRequest, refusedTokenInURL, err)
		return
	case errors.Is(err, errNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis vnc-proxy"`)
		p.refuse(w, r, http.StatusUnauthorized, refusedNoToken, err)
		return
	case err != nil:
		p.refuse(w, r, http.StatusBadRequest, refusedBadRequest, err)
		return
	}
	if !originAllowed(r, p.allowed) {
		p.refuse(w, r, http.StatusForbidden, refusedOrigin, fmt.Errorf("origin %q is not allowed", r.Header.Get("Origin")))
		return
	}
	switch err := p.opts.Verifier.Check(r.Context(), token, ns, vm); {
	case errors.Is(err, vncproxy.ErrOtherVM):
		p.refuse(w, r, http.StatusForbidden, refusedOtherVM, errors.New("the token is for another VM"))
		return
	case errors.Is(err, vncproxy.ErrNotAuthenticated):
		p.refuse(w, r, http.StatusUnauthorized, refusedToken, errors.New("the token is not good: invalid, expired or revoked"))
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		p.refuse(w, r, http.StatusServiceUnavailable, refusedUnavailable, err)
		return
	}
	claims, expiry, err := verifiedClaims(token)
	if err != nil { // checked just above: only a verifier bug gets here
		p.refuse(w, r, http.StatusUnauthorized, refusedToken, errors.New("the token is not good"))
		return
	}
	if !p.opts.Clock.Now().Before(expiry) {
		// The verifier allows for clock skew; a session ends at exp on this
		// proxy's clock, and so a new one does not open after it.
		p.refuse(w, r, http.StatusUnauthorized, refusedToken, errors.New("the token expired"))
		return
	}
	if claims.Private.SingleUse && p.opts.Claimer == nil {
		p.refuse(w, r, http.StatusForbidden, refusedSingleUse, errors.New("this proxy cannot claim single-use tokens (it has no --issuer-kubeconfig)"))
		return
	}
	conn, err := p.opts.Backend.Dial(r.Context(), ns, vm)
	switch {
	case errors.Is(err, ErrNoSuchVM):
		p.refuse(w, r, http.StatusNotFound, refusedNoConsole, fmt.Errorf("VM %s/%s has no console here", ns, vm))
		return
	case err != nil:
		p.refuse(w, r, http.StatusBadGateway, refusedBackendError, err)
		return
	}
	// A single-use token is used up only once its console is reachable.
	if claims.Private.SingleUse {
		switch err := p.opts.Claimer.Claim(r.Context(), token); {
		case errors.Is(err, vncproxy.ErrClaimed):
			conn.Close()
			p.refuse(w, r, http.StatusUnauthorized, refusedUsed, errors.New("this single-use token already opened a session"))
			return
		case errors.Is(err, vncproxy.ErrNotAuthenticated):
			conn.Close()
			p.refuse(w, r, http.StatusUnauthorized, refusedToken, errors.New("the token is not good: invalid, expired or revoked"))
			return
		case err != nil:
			conn.Close()
			w.Header().Set("Retry-After", "1")
			p.refuse(w, r, http.StatusServiceUnavailable, refusedUnavailable, err)
			return
		}
	}
	ws, err := p.upgrader.Upgrade(w, r, nil)
	if err != nil {
		conn.Close()
		if p.opts.Metrics != nil {
			p.opts.Metrics.Refused.WithLabelValues(refusedBadRequest).Inc()
		}
		return
	}
	s := &session{proxy: p, ws: ws, vm: conn, token: token, jti: claims.ID, namespace: ns, name: vm, expiry: expiry, done: make(chan struct{})}
	if !p.track(s) {
		s.end(endShutdown)
		return
	}
	s.run()
}

func (p *Proxy) track(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.sessions[s] = struct{}{}
	return true
}

func (p *Proxy) untrack(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
}

// verifiedClaims reads the claims of a token whose signature was verified:
// its jti, exp and whether it is single-use.
func verifiedClaims(token string) (*tokenfmt.Claims, time.Time, error) {
	c, err := tokenfmt.DecodeCompact(token)
	if err != nil {
		return nil, time.Time{}, err
	}
	if c.Expiry == nil {
		return nil, time.Time{}, errors.New("console: no exp")
	}
	return c, tokenfmt.Time(c.Expiry), nil
}

// isClosedConn reports errors that only say a connection was closed.
func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived)
}
