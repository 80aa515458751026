package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	wstransport "k8s.io/client-go/transport/websocket"
	"k8s.io/streaming/pkg/httpstream"
)

// KubeVirtProtocol is the subprotocol of KubeVirt's console websockets: the
// raw byte stream in binary messages.
const KubeVirtProtocol = "plain.kubevirt.io"

// KubeVirtBackend reaches a VM's console as virtctl and vm-console-proxy
// do: KubeVirt's subresources.kubevirt.io/v1 virtualmachineinstances/{vm}/vnc
// websocket on kube-apiserver, with the proxy's own credentials (its
// ServiceAccount in a cluster), which RBAC must allow to get that
// subresource. The user's token never leaves the proxy.
type KubeVirtBackend struct {
	cfg *rest.Config
}

// NewKubeVirt returns a backend using cfg to reach kube-apiserver.
func NewKubeVirt(cfg *rest.Config) (*KubeVirtBackend, error) {
	if cfg == nil || cfg.Host == "" {
		return nil, errors.New("console: the kubevirt backend needs kube-apiserver's address")
	}
	return &KubeVirtBackend{cfg: rest.CopyConfig(cfg)}, nil
}

// Dial implements Backend: ErrNoSuchVM when KubeVirt has no running
// instance of the VM (404).
func (b *KubeVirtBackend) Dial(ctx context.Context, namespace, name string) (net.Conn, error) {
	rt, holder, err := wstransport.RoundTripperFor(b.cfg)
	if err != nil {
		return nil, fmt.Errorf("console: kubevirt backend: %w", err)
	}
	u := strings.TrimSuffix(b.cfg.Host, "/") + "/apis/subresources.kubevirt.io/v1/namespaces/" + url.PathEscape(namespace) +
		"/virtualmachineinstances/" + url.PathEscape(name) + "/vnc"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("console: kubevirt backend: %w", err)
	}
	ws, err := wstransport.Negotiate(rt, holder, req, KubeVirtProtocol)
	if err != nil {
		var upgrade *httpstream.UpgradeFailureError
		if errors.As(err, &upgrade) && apierrors.IsNotFound(upgrade.Cause) {
			return nil, ErrNoSuchVM
		}
		return nil, fmt.Errorf("console: kubevirt backend: %s/%s: %w", namespace, name, err)
	}
	return &websocketConn{ws: ws}, nil
}

// websocketConn is a net.Conn over a websocket whose binary messages carry
// a byte stream.
type websocketConn struct {
	ws     *websocket.Conn
	reader io.Reader // the message being read
	wmu    sync.Mutex
}

func (c *websocketConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
					return 0, io.EOF
				}
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				continue
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if errors.Is(err, io.EOF) {
			c.reader = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *websocketConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close says goodbye to KubeVirt (briefly) and closes the connection.
func (c *websocketConn) Close() error {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(100*time.Millisecond))
	return c.ws.Close()
}

func (c *websocketConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *websocketConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *websocketConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}

func (c *websocketConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *websocketConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
