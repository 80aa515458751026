package console

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"portcullis.dev/portcullis/authn/vncproxy"
)

// endReason is why a session ended: a metric label, the websocket close
// code and the reason the client is shown.
type endReason struct {
	label string
	code  int
	text  string
	// byToken marks the ends the token caused: they are audited.
	byToken bool
}

var (
	endClient      = endReason{"client_closed", websocket.CloseNormalClosure, "", false}
	endVM          = endReason{"vm_closed", websocket.CloseNormalClosure, "the VM's console closed", false}
	endShutdown    = endReason{"shutdown", websocket.CloseGoingAway, "the proxy is shutting down", false}
	endRefused     = endReason{"token_refused", websocket.ClosePolicyViolation, "token revoked or no longer valid", true}
	endExpired     = endReason{"token_expired", websocket.ClosePolicyViolation, "token expired", true}
	endUnavailable = endReason{"verifier_unavailable", websocket.CloseTryAgainLater, "the token could not be checked", true}
)

// relayBufferBytes is what each session holds to read from its VM.
const relayBufferBytes = 16 << 10

// maxClientMessage bounds one message from the client (RFB client messages
// are small; a clipboard paste is the largest).
const maxClientMessage = 1 << 20

// closeGrace is how long the client gets to answer a close frame.
const closeGrace = time.Second

// session is one live console: a websocket and a VM connection, relayed
// while the token stays good.
type session struct {
	proxy           *Proxy
	ws              *websocket.Conn
	vm              net.Conn
	token           string
	jti             string
	namespace, name string
	expiry          time.Time

	once   sync.Once
	done   chan struct{}
	reason endReason
}

// run relays until the session ends, and accounts for it.
func (s *session) run() {
	p := s.proxy
	opened := p.opts.Clock.Now()
	if m := p.opts.Metrics; m != nil {
		m.Opened.Inc()
		m.Open.Inc()
	}
	p.opts.Audit.Info("vnc-session-opened", "namespace", s.namespace, "vm", s.name, "jti", s.jti,
		"remote", s.ws.RemoteAddr().String(), "expiresAt", s.expiry)
	s.ws.SetReadLimit(maxClientMessage)
	var relays sync.WaitGroup
	relays.Go(s.toClient)
	relays.Go(s.toVM)
	s.followToken()
	relays.Wait()
	p.untrack(s)
	if m := p.opts.Metrics; m != nil {
		m.Open.Dec()
		m.Ended.WithLabelValues(s.reason.label).Inc()
	}
	attrs := []any{"namespace", s.namespace, "vm", s.name, "jti", s.jti, "reason", s.reason.label, "duration", p.opts.Clock.Since(opened).String()}
	if s.reason.byToken {
		p.opts.Audit.Info("vnc-session-ended", attrs...)
	} else {
		p.opts.Log.Debug("vnc session ended", attrs...)
	}
}

// end ends the session once: the client gets a close frame with the reason,
// the VM connection is closed, and the websocket is closed once the client
// answered or closeGrace passed.
func (s *session) end(r endReason) {
	s.once.Do(func() {
		s.reason = r
		close(s.done)
		// Socket deadlines are wall-clock time.
		s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(r.code, r.text), time.Now().Add(closeGrace))
		s.vm.Close()
		s.ws.SetReadDeadline(time.Now().Add(closeGrace))
	})
}

func (s *session) ending() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// toClient relays the VM's bytes to the client.
func (s *session) toClient() {
	buf := make([]byte, relayBufferBytes)
	for {
		n, err := s.vm.Read(buf)
		if n > 0 {
			if werr := s.ws.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
				s.end(endClient)
				return
			}
			if m := s.proxy.opts.Metrics; m != nil {
				m.Relayed.WithLabelValues("to_client").Add(float64(n))
			}
		}
		if err != nil {
			s.end(endVM)
			return
		}
	}
}

// toVM relays the client's messages to the VM. It is the websocket's only
// reader, so it also sees the client's answer to a close frame, and closes
// the websocket after it.
func (s *session) toVM() {
	defer s.ws.Close()
	for {
		kind, data, err := s.ws.ReadMessage()
		if err != nil {
			if !s.ending() && !isClosedConn(err) {
				s.proxy.opts.Log.Debug("vnc session read", "err", err)
			}
			s.end(endClient)
			return
		}
		if kind != websocket.BinaryMessage {
			continue
		}
		if _, err := s.vm.Write(data); err != nil {
			s.end(endVM)
			return
		}
		if m := s.proxy.opts.Metrics; m != nil {
			m.Relayed.WithLabelValues("to_vm").Add(float64(len(data)))
		}
	}
}

// followToken checks the token again every Recheck and ends the session
// when it is refused, at its expiry, or when the verifier could not answer
// for UnavailableGrace.
func (s *session) followToken() {
	o := s.proxy.opts
	ticker := o.Clock.NewTicker(o.Recheck)
	defer ticker.Stop()
	expiry := o.Clock.NewTimer(s.expiry.Sub(o.Clock.Now()))
	defer expiry.Stop()
	var failingSince time.Time
	for {
		select {
		case <-s.done:
			return
		case <-expiry.C():
			s.end(endExpired)
			return
		case <-ticker.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.UnavailableGrace)
		err := o.Verifier.Check(ctx, s.token, s.namespace, s.name)
		cancel()
		switch {
		case err == nil:
			failingSince = time.Time{}
		case errors.Is(err, vncproxy.ErrNotAuthenticated), errors.Is(err, vncproxy.ErrOtherVM):
			if !o.Clock.Now().Before(s.expiry) {
				s.end(endExpired)
			} else {
				s.end(endRefused)
			}
			return
		default:
			now := o.Clock.Now()
			if failingSince.IsZero() {
				failingSince = now
			}
			o.Log.Warn("vnc session: the token could not be checked", "namespace", s.namespace, "vm", s.name, "err", err)
			if now.Sub(failingSince) >= o.UnavailableGrace {
				s.end(endUnavailable)
				return
			}
		}
	}
}
