package testutil

import (
	"io"
	"net"
	"testing"
)

// RFBBanner is what a VNC server (RFB 3.8) sends first.
const RFBBanner = "RFB 003.008\n"

// StartRFBEcho is a stand-in for a VM's VNC server where a real one (QEMU,
// which the browser test runs) is not needed: it sends the RFB banner, then
// echoes what it gets. It returns its TCP address.
func StartRFBEcho(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, RFBBanner)
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}
