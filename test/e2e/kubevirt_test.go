package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"portcullis.dev/portcullis/internal/testutil"
)

// virtAPI is a stand-in for KubeVirt's virt-api, as far as consoles go: the
// subresources.kubevirt.io/v1 API with virtualmachineinstances/{vm}/vnc, a
// websocket (subprotocol plain.kubevirt.io) relaying the VM's VNC server. It
// is served behind the real kube-apiserver's aggregation layer, which
// authenticates and authorizes (RBAC) the caller and forwards its identity
// in front-proxy headers, as for KubeVirt. KubeVirt itself cannot run here
// (it needs nodes, a container runtime and KVM).
type virtAPI struct {
	t        *testing.T
	port     int
	ca       []byte
	consoles map[string]string // running VMs: namespace/name -> their VNC server (tcp)

	mu    sync.Mutex
	users []string // who opened each console, as the front proxy said
}

// startVirtAPI serves the stand-in on 127.0.0.1 with a certificate for
// virt-api.kubevirt.svc (the name the aggregation layer checks), trusting
// only the cluster's front-proxy client.
func startVirtAPI(t *testing.T, c *cluster, consoles map[string]string) *virtAPI {
	t.Helper()
	v := &virtAPI{t: t, port: freePorts(t, 1)[0], consoles: consoles}
	var cert tls.Certificate
	v.ca, cert = servingPKI(t, "virt-api.kubevirt.svc")
	frontProxyCA, err := os.ReadFile(c.frontProxy.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(frontProxyCA)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /apis/subresources.kubevirt.io/v1", v.discovery)
	mux.HandleFunc("GET /apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/vnc", v.vnc)
	l, err := net.Listen("tcp", "127.0.0.1:"+itoa(v.port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: v.frontProxyOnly(mux), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return v
}

// frontProxyOnly lets through only kube-apiserver's front proxy.
func (v *virtAPI) frontProxyOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != frontProxyName {
			http.Error(w, "only the aggregation layer may call", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (v *virtAPI) discovery(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: "subresources.kubevirt.io/v1",
		APIResources: []metav1.APIResource{{Name: "virtualmachineinstances/vnc", Namespaced: true, Kind: "VirtualMachineInstance", Verbs: []string{"get"}}},
	})
}

func (v *virtAPI) vnc(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	addr, ok := v.consoles[ns+"/"+name]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: `virtualmachineinstance.kubevirt.io "` + name + `" not found`,
			Details: &metav1.StatusDetails{Name: name, Group: "kubevirt.io", Kind: "virtualmachineinstance"}})
		return
	}
	// Recorded before the upgrade answers, so the proxy's dial returns
	// after it.
	v.mu.Lock()
	v.users = append(v.users, r.Header.Get("X-Remote-User"))
	v.mu.Unlock()
	up := websocket.Upgrader{Subprotocols: []string{"plain.kubevirt.io"}}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	vm, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer vm.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := vm.Read(buf)
			if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
				return
			}
			if err != nil {
				ws.Close()
				return
			}
		}
	}()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if _, err := vm.Write(data); err != nil {
			return
		}
	}
}

// openedBy lists who opened consoles, as kube-apiserver said.
func (v *virtAPI) openedBy() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.users...)
}

// register makes kube-apiserver's aggregation layer serve
// subresources.kubevirt.io/v1 from the stand-in, and waits until it is
// available.
func (v *virtAPI) register(c *cluster, api *kubeAPIServer) {
	v.t.Helper()
	c.apply(api, `apiVersion: v1
kind: Namespace
metadata: {name: kubevirt}
---
apiVersion: v1
kind: Service
metadata: {name: virt-api, namespace: kubevirt}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: https, port: `+itoa(v.port)+`}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.subresources.kubevirt.io}
spec:
  group: subresources.kubevirt.io
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: `+base64.StdEncoding.EncodeToString(v.ca)+`
  service: {name: virt-api, namespace: kubevirt, port: `+itoa(v.port)+`}
`)
	for range 300 {
		out, _ := c.kubectlQuiet(api, adminToken, "get", "apiservice", "v1.subresources.kubevirt.io", "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status}`)
		if out == "True" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := c.kubectlQuiet(api, adminToken, "get", "apiservice", "v1.subresources.kubevirt.io", "-o", "yaml")
	v.t.Fatalf("the virt-api stand-in never became available:\n%s", out)
}

// servingPKI makes a CA and a serving certificate for host, signed by it.
func servingPKI(t *testing.T, host string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host + "-ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testKubeVirtBackend: `vnc-proxy --backend kubevirt` opens consoles through
// kube-apiserver with its own identity, and a console ends when its VM's
// ServiceAccount is deleted (cluster-connected Portcullis refuses the token).
func testKubeVirtBackend(t *testing.T, c *cluster, api *kubeAPIServer) {
	v := startVirtAPI(t, c, map[string]string{"vms/fedora": testutil.StartRFBEcho(t)})
	v.register(c, api)
	c.apply(api, `# The proxy's own identity may open consoles (as vm-console-proxy's ServiceAccount).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: portcullis:vnc-proxy}
rules:
- apiGroups: [subresources.kubevirt.io]
  resources: [virtualmachineinstances/vnc]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: portcullis:vnc-proxy}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: portcullis:vnc-proxy}
subjects: [{kind: User, name: vnc-proxy}]
`)
	online := []string{"--webhook-kubeconfig", filepath.Join(c.portcullis.dir, "webhook.kubeconfig")}
	offline := []string{"--issuer-kubeconfig", filepath.Join(c.portcullis.dir, "admin.kubeconfig"), "--issuer", "https://portcullis.portcullis.svc"}
	startProxy := func(identity string, verification []string) *consoleProxy {
		t.Helper()
		port := freePorts(t, 1)[0]
		p := &consoleProxy{base: "https://127.0.0.1:" + itoa(port), proc: start(t, portcullisBin, append([]string{"vnc-proxy",
			"--bind-address", "127.0.0.1:" + itoa(port), "--backend", "kubevirt", "--kubevirt-kubeconfig", c.kubeconfig(api, identity),
			"--tls-cert-file", filepath.Join(c.portcullis.dir, "serving.crt"), "--tls-private-key-file", filepath.Join(c.portcullis.dir, "serving.key"),
			"--log-level", "debug"}, verification...)...)}
		client := c.portcullis.httpClient(t)
		for range 400 {
			if resp, err := client.Get(p.base + "/console/vms/fedora"); err == nil {
				resp.Body.Close()
				return p
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("vnc-proxy never served:\n%s", p.proc.logs.String())
		return nil
	}
	proxy := startProxy(vncProxyToken, online)
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(c.portcullis.dir, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	dial := func(p *consoleProxy, vm, token string) (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, Subprotocols: []string{"binary"}, HandshakeTimeout: 10 * time.Second}
		return d.Dial(strings.Replace(p.base, "https", "wss", 1)+"/vnc/vms/"+vm, http.Header{"Authorization": {"Bearer " + token}})
	}
	mint := func(vm string) string {
		var out strings.Builder
		if err := runTo(&out, portcullisBin, "vnc", "--kubeconfig", c.kubeconfig(api, aliceToken), "vms/"+vm, "--duration", "1h"); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}

	fedora := mint("fedora")
	ws, resp, err := dial(proxy, "fedora", fedora)
	if err != nil {
		t.Fatalf("open fedora's console: %v (%v)", err, resp)
	}
	defer ws.Close()
	// The same console through a proxy verifying offline (JWKS and the
	// revocation watch), which learns of the ServiceAccount's deletion from
	// the mark Portcullis records for it.
	offlineProxy := startProxy(vncProxyToken, offline)
	var wsOffline *websocket.Conn
	for range 200 { // until its revocation watch listed
		if wsOffline, resp, err = dial(offlineProxy, "fedora", fedora); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open fedora's console offline: %v (%v)", err, resp)
	}
	defer wsOffline.Close()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, banner, err := ws.ReadMessage(); err != nil || string(banner) != testutil.RFBBanner {
		t.Fatalf("fedora's console: %q %v", banner, err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, echo, err := ws.ReadMessage(); err != nil || string(echo) != "ping" {
		t.Fatalf("fedora's console echo: %q %v", echo, err)
	}
	users := v.openedBy()
	for _, u := range users {
		if u != "vnc-proxy" {
			t.Fatalf("KubeVirt saw consoles opened by %q, want the proxy's own identity (vnc-proxy) only", users)
		}
	}
	if len(users) != 2 {
		t.Fatalf("KubeVirt saw %d consoles opened, want 2 (online and offline)", len(users))
	}

	// centos is a VirtualMachine without a running instance: KubeVirt's 404.
	if _, resp, err := dial(proxy, "centos", mint("centos")); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a VM without an instance: %v %v, want 404", err, resp)
	}
	// An identity RBAC does not allow to open consoles gets nothing from
	// KubeVirt: the proxy answers 502 and opens no session.
	bobProxy := startProxy(bobToken, online)
	if _, resp, err := dial(bobProxy, "fedora", fedora); err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("a proxy whose identity RBAC refuses: %v %v, want 502", err, resp)
	}

	// Deleting the VM's ServiceAccount revokes its tokens (the seed's way),
	// and so ends the live console.
	if _, err := c.kubectl(api, adminToken, "delete", "serviceaccount", "--namespace", "vms", "fedora-vnc-access"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for name, conn := range map[string]*websocket.Conn{"online": ws, "offline": wsOffline} {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			_, _, err := conn.ReadMessage()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
				t.Fatalf("%s: the console ended with %v, want close code 1008", name, err)
			}
			t.Logf("%s: the console closed %v after its VM's ServiceAccount was deleted (kubectl returned)", name, time.Since(deleted).Round(time.Millisecond))
			break
		}
	}
}
