package console

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/websocket"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// A stand-in for KubeVirt's virt-api behind kube-apiserver (the e2e suite
// runs one behind a real kube-apiserver's aggregation layer): vms/running
// has a console that sends two messages and echoes; anything else is
// KubeVirt's 404, and a caller without the proxy's token gets 403.
func kubevirtStandIn(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := func(code int, reason metav1.StatusReason) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: reason, Code: int32(code), Message: string(reason)})
		}
		switch {
		case r.Header.Get("Authorization") != "Bearer proxy-sa-token":
			status(http.StatusForbidden, metav1.StatusReasonForbidden)
		case r.URL.Path != "/apis/subresources.kubevirt.io/v1/namespaces/vms/virtualmachineinstances/running/vnc":
			status(http.StatusNotFound, metav1.StatusReasonNotFound)
		default:
			ws, err := (&websocket.Upgrader{Subprotocols: []string{KubeVirtProtocol}}).Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer ws.Close()
			ws.WriteMessage(websocket.BinaryMessage, []byte("RFB 003.008\n"))
			ws.WriteMessage(websocket.TextMessage, []byte("not console bytes"))
			ws.WriteMessage(websocket.BinaryMessage, []byte("ready"))
			for {
				kind, data, err := ws.ReadMessage()
				if err != nil {
					return
				}
				ws.WriteMessage(kind, data)
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func kubevirtBackend(t *testing.T, s *httptest.Server, token string) *KubeVirtBackend {
	t.Helper()
	b, err := NewKubeVirt(&rest.Config{Host: s.URL, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKubeVirtBackend(t *testing.T) {
	s := kubevirtStandIn(t)
	conn, err := kubevirtBackend(t, s, "proxy-sa-token").Dial(context.Background(), "vms", "running")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The byte stream runs across messages; text messages are not part of it.
	buf := make([]byte, len("RFB 003.008\nready"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "RFB 003.008\nready" {
		t.Fatalf("read %q %v", buf, err)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}

	if _, err := kubevirtBackend(t, s, "proxy-sa-token").Dial(context.Background(), "vms", "stopped"); !errors.Is(err, ErrNoSuchVM) {
		t.Fatalf("a VM without an instance: %v, want ErrNoSuchVM", err)
	}
	if _, err := kubevirtBackend(t, s, "someone-else").Dial(context.Background(), "vms", "running"); err == nil || errors.Is(err, ErrNoSuchVM) {
		t.Fatalf("refused by RBAC: %v, want an error that is not ErrNoSuchVM", err)
	}
}
