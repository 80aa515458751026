package app

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"portcullis.dev/portcullis/config"
	"portcullis.dev/portcullis/internal/testutil"
)

// TestServeOnEtcd runs serve on a real etcd server instead of bbolt: mint,
// review, revoke, and a user token's disable, then a restart that keeps all
// of it.
func TestServeOnEtcd(t *testing.T) {
	endpoint := testutil.StartEtcd(t)
	h := startServer(t, func(c *config.Config) {
		c.Store = config.Store{Type: config.StoreEtcd, Endpoints: []string{endpoint}, Prefix: "/portcullis-test/"}
	})
	ctx := context.Background()
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	apiCtx := authenticator.WithAudiences(ctx, authenticator.Audiences(h.cfg.APIAudiences))
	good := h.mint("ns", "good", 3600).Status.Token
	revoked := h.mint("ns", "revoked", 3600).Status.Token
	if err := RunRevoke(ctx, &RevokeOptions{ClientOptions: ClientOptions{Kubeconfig: filepath.Join(h.dir, AdminKubeconfig)}, JTI: jtiOf(t, revoked)}, io.Discard); err != nil {
		t.Fatal(err)
	}
	h.writeCert("alice", "alice")
	name, userToken := h.createToken("alice", nil)
	if _, err := h.tokensAs("alice").Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		if _, ok, err := wh.AuthenticateToken(apiCtx, good); !ok || err != nil {
			t.Fatalf("%s: the good token: %v %v", when, ok, err)
		}
		for what, tok := range map[string]string{"revoked": revoked, "disabled": userToken} {
			if _, ok, err := wh.AuthenticateToken(apiCtx, tok); ok || err != nil {
				t.Fatalf("%s: the %s token: %v %v", when, what, ok, err)
			}
		}
	}
	check("running")
	h.stop()
	h.start()
	check("after a restart on the same etcd")
}
