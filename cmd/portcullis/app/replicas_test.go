package app

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"

	"portcullis.dev/portcullis/authn/vncproxy"
	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
)

// TestReplicasShareRevocations runs three replicas on one 3-member etcd
// cluster: a token revoked, or a user token disabled, through A is refused
// by B and C.
func TestReplicasShareRevocations(t *testing.T) {
	cluster := testutil.NewEtcdCluster(t, 3)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: cluster.URLs(), Prefix: "/replicas/"}
	})
	b, c := a.replica(), a.replica()
	ctx := context.Background()
	tok := a.mint("ns", "sa", 3600).Status.Token
	a.writeCert("alice", "alice")
	name, userToken := a.createToken("alice", nil)
	for _, r := range []*harness{a, b, c} {
		if !r.reviewAt(tok) || !r.reviewAt(userToken) {
			t.Fatalf("replica %s refuses fresh tokens", r.webhookURL())
		}
	}
	// Both are cached everywhere now; the changes must still win.
	start := time.Now()
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(a.dir, AdminKubeconfig)}, JTI: jtiOf(t, tok)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := a.tokensAs("alice").Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if a.reviewAt(tok) || a.reviewAt(userToken) {
		t.Fatal("replica A, which took the changes, still accepts the tokens")
	}
	for _, r := range []*harness{b, c} {
		refused := false
		for range 200 {
			if !r.reviewAt(tok) && !r.reviewAt(userToken) {
				refused = true
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !refused {
			t.Fatalf("replica %s still accepts a token revoked (or disabled) through A; its log:\n%s", r.webhookURL(), tail(r.logs.String(), 3000))
		}
	}
	t.Logf("B and C refused the revoked and the disabled token %v after A took the changes", time.Since(start).Round(time.Millisecond))
}

// TestReplicaRestartUnderLoad restarts replica A while B serves reviews:
// B is unaffected, and A rejoins and sees revocations made through B while
// it was down.
func TestReplicaRestartUnderLoad(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/restart/"}
	})
	b := a.replica()
	tok := a.mint("ns", "sa", 3600).Status.Token
	revokedWhileDown := a.mint("ns", "gone", 3600).Status.Token
	if !a.reviewAt(revokedWhileDown) {
		t.Fatal("fresh token refused") // cached on A now
	}
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !b.reviewAt(tok) {
				failures.Add(1)
			}
		}
	})
	a.stop()
	// Revoke through B while A is down.
	rev := &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: b.adminKubeconfigFor()}, JTI: jtiOf(t, revokedWhileDown)}
	if err := RunRevoke(context.Background(), rev, io.Discard); err != nil {
		t.Fatal(err)
	}
	a.start()
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("B failed %d reviews while A restarted", failures.Load())
	}
	if !a.reviewAt(tok) {
		t.Fatal("A does not accept a valid token after its restart")
	}
	if a.reviewAt(revokedWhileDown) {
		t.Fatal("A accepts a token revoked through B while A was down")
	}
}

// adminKubeconfigFor writes an admin kubeconfig pointing at this replica's issuer.
func (h *harness) adminKubeconfigFor() string {
	h.t.Helper()
	kc, err := clientcmd.LoadFromFile(filepath.Join(h.dir, AdminKubeconfig))
	if err != nil {
		h.t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server = h.issuerURL("")
	}
	path := filepath.Join(h.t.TempDir(), "admin.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// TestOfflineProxyLearnsRevocationsMadeOnAnotherReplica: an offline VNC
// proxy watches replica B's revocations; a VM revoked through replica A
// must reach it (B learns it from the store's watch and must pass it on).
func TestOfflineProxyLearnsRevocationsMadeOnAnotherReplica(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	a := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/offline/"}
	})
	b := a.replica()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	atB := a.restConfig(AdminKubeconfig)
	atB.Host = b.issuerURL("")
	offline, err := vncproxy.NewOffline(ctx, vncproxy.OfflineConfig{Issuer: atB, Iss: a.cfg.Issuer})
	if err != nil {
		t.Fatal(err)
	}
	_, vm1, _ := a.vncGet(adminBase, "vm1", "?duration=1h")
	_, vm2, _ := a.vncGet(adminBase, "vm2", "?duration=1h")
	poll := func(what string, want error) time.Duration {
		t.Helper()
		start := time.Now()
		var err error
		for range 200 {
			if err = offline.Check(ctx, vm1, "vms", "vm1"); errors.Is(err, want) || (want == nil && err == nil) {
				return time.Since(start)
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("%s: %v, want %v", what, err, want)
		return 0
	}
	poll("synced and good at B", nil)
	if err := RunVNC(ctx, &VNCOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(a.dir, AdminKubeconfig)}}, []string{"revoke", "vms/vm1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	took := poll("VM revoked through A, proxy on B", vncproxy.ErrNotAuthenticated)
	t.Logf("the proxy on B refused the VM revoked through A %v after the revocation returned", took.Round(time.Millisecond))
	if err := offline.Check(ctx, vm2, "vms", "vm2"); err != nil {
		t.Fatalf("another VM's token: %v", err)
	}
}
