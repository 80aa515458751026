// Package testutil holds helpers shared by the integration and end-to-end
// tests.
package testutil

import (
	"net"
	"testing"
)

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment ago,
// for servers that must be told their port before they start.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
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
