package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/cmd/portcullis/app"
	"portcullis.dev/portcullis/console"
	"portcullis.dev/portcullis/internal/testutil"
)

// TestBenchConsoleSessions holds 1,000 idle console sessions through
// `portcullis vnc-proxy` (online verification, map backend) and prints the
// memory they take. The proxy's and the clients' ends of every session are
// in this process, so the figure bounds the proxy's share from above.
func TestBenchConsoleSessions(t *testing.T) {
	if os.Getenv("PORTCULLIS_BENCH_TABLE") == "" {
		t.Skip("prints the benchmark table; run `make bench`")
	}
	const sessions = 1000
	e := newEnv(t)
	// A VNC server that sends its banner and then idles (nobody types
	// into these consoles).
	vncAddr := testutil.StartRFBEcho(t)
	dir := t.TempDir()
	mapFile := filepath.Join(dir, "consoles.yaml")
	os.WriteFile(mapFile, []byte("vms/vm: tcp:"+vncAddr+"\n"), 0o600)
	// init wrote the webhook kubeconfig for port 0: point it at this server.
	kc, err := clientcmd.LoadFromFile(filepath.Join(e.dir, app.WebhookKubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range kc.Clusters {
		cl.Server = "https://" + e.srv.WebhookAddr().String() + "/authenticate"
	}
	webhook := filepath.Join(dir, "webhook.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, webhook); err != nil {
		t.Fatal(err)
	}
	o := &app.VNCProxyOptions{}
	o.AddFlags(pflag.NewFlagSet("vnc-proxy", pflag.ContinueOnError))
	o.BindAddress, o.Backend, o.WebhookKubeconfig = "127.0.0.1:0", "map:"+mapFile, webhook
	o.CertFile, o.KeyFile = filepath.Join(e.dir, "serving.crt"), filepath.Join(e.dir, "serving.key")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := app.NewVNCProxy(ctx, o, slog.New(slog.DiscardHandler), slog.New(slog.DiscardHandler), clock.RealClock{})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)

	tokens, _ := e.mintVNC(t, 1)
	pem, _ := os.ReadFile(filepath.Join(e.dir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, Subprotocols: []string{console.DataProtocol}}
	header := http.Header{"Authorization": {"Bearer " + tokens[0]}}
	before := residentMemory(t)
	heapBefore := liveHeap()
	var conns []*websocket.Conn
	for range sessions {
		ws, _, err := d.Dial("wss://"+p.Addr().String()+"/vnc/vms/vm", header)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
	}
	time.Sleep(2 * time.Second) // every session rechecked its token a few times
	after := residentMemory(t)
	heapAfter := liveHeap()
	goroutines := runtime.NumGoroutine()
	for _, ws := range conns {
		ws.Close()
	}
	fmt.Printf("\nConsole sessions (vnc-proxy, online verification, 250 ms rechecks; proxy and client ends in one process)\n\n")
	fmt.Printf("  %d idle sessions: RSS %d -> %d MB (%.0f KB a session), allocated %d -> %d MB, live Go heap %d -> %d MB (%.0f KB a session), %d goroutines\n",
		len(conns), before.total>>20, after.total>>20, float64(after.total-before.total)/sessions/1024,
		before.anon>>20, after.anon>>20, heapBefore>>20, heapAfter>>20, float64(heapAfter-heapBefore)/sessions/1024, goroutines)
}
