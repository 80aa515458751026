// Package testutil holds helpers shared by the integration and end-to-end
// tests.
package testutil

import (
	"bytes"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent writers, for capturing the
// logs of servers and processes under test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment ago,
// for servers that must be told their port before they start. They are
// drawn below the kernel's ephemeral range, which every outgoing connection
// and every listener on port 0 takes its port from: a port drawn from that
// range could be taken by a test's own client connections before its
// server binds it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	low := ephemeralLow()
	var ports []int
	var ls []net.Listener
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if low > minDrawnPort && tries < 1000 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(minDrawnPort+rand.IntN(low-minDrawnPort)))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil && addr != "127.0.0.1:0" {
			continue // taken: draw again
		}
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// minDrawnPort is the lowest port FreePorts draws.
const minDrawnPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// or 0 when it is not known.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 2 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}
