package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// ErrNoSuchVM means the backend knows no console for the VM.
var ErrNoSuchVM = errors.New("console: no VNC console for this VM")

// Backend opens a VM's VNC byte stream (RFB).
type Backend interface {
	// Dial connects to the VNC server of VM namespace/name; ErrNoSuchVM if
	// there is none.
	Dial(ctx context.Context, namespace, name string) (net.Conn, error)
}

// MapBackend reaches each VM's VNC server at a fixed address, as read from
// a file: QEMU and libvirt hosts, and tests.
type MapBackend struct {
	addrs map[string]address
}

type address struct{ network, addr string }

// LoadMap reads a map backend's file: a YAML mapping of "namespace/vm" to
// "tcp:HOST:PORT" or "unix:/PATH".
func LoadMap(path string) (*MapBackend, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("console: map backend: %w", err)
	}
	var raw map[string]string
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("console: map backend %s: %w", path, err)
	}
	m := &MapBackend{addrs: make(map[string]address, len(raw))}
	for vm, addr := range raw {
		if ns, name, ok := strings.Cut(vm, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("console: map backend %s: %q is not NAMESPACE/VM", path, vm)
		}
		a, err := parseAddress(addr)
		if err != nil {
			return nil, fmt.Errorf("console: map backend %s: %s: %w", path, vm, err)
		}
		m.addrs[vm] = a
	}
	return m, nil
}

func parseAddress(s string) (address, error) {
	network, addr, _ := strings.Cut(s, ":")
	switch {
	case network == "unix" && strings.HasPrefix(addr, "/"):
	case network == "tcp":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return address{}, fmt.Errorf("%q: %w", s, err)
		}
	default:
		return address{}, fmt.Errorf("%q is not tcp:HOST:PORT or unix:/PATH", s)
	}
	return address{network, addr}, nil
}

// Dial implements Backend.
func (m *MapBackend) Dial(ctx context.Context, namespace, name string) (net.Conn, error) {
	a, ok := m.addrs[namespace+"/"+name]
	if !ok {
		return nil, ErrNoSuchVM
	}
	var d net.Dialer
	return d.DialContext(ctx, a.network, a.addr)
}
