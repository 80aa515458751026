package app

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"portcullis.dev/portcullis/config"
	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
)

var tokensGVR = extv1.SchemeGroupVersion.WithResource("tokens")

// tokensAs is the tokens resource as the holder of the named certificate.
func (h *harness) tokensAs(certBase string) dynamic.NamespaceableResourceInterface {
	h.t.Helper()
	return h.tokensClient(certBase, 0)
}

// tokensAsUnlimited is tokensAs without client-go's client-side rate limit.
func (h *harness) tokensAsUnlimited(certBase string) dynamic.NamespaceableResourceInterface {
	h.t.Helper()
	return h.tokensClient(certBase, -1)
}

func (h *harness) tokensClient(certBase string, qps float32) dynamic.NamespaceableResourceInterface {
	h.t.Helper()
	cfg := &rest.Config{Host: h.issuerURL(""), QPS: qps, TLSClientConfig: rest.TLSClientConfig{
		CAFile:   filepath.Join(h.dir, caBase+".crt"),
		CertFile: filepath.Join(h.dir, certBase+".crt"),
		KeyFile:  filepath.Join(h.dir, certBase+".key"),
	}}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	return c.Resource(tokensGVR)
}

func tokenObject(spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ext.cattle.io/v1", "kind": "Token", "spec": spec}}
}

// createToken creates a token as certBase and returns its name and value.
func (h *harness) createToken(certBase string, spec map[string]any) (string, string) {
	h.t.Helper()
	out, err := h.tokensAs(certBase).Create(context.Background(), tokenObject(spec), metav1.CreateOptions{})
	if err != nil {
		h.t.Fatalf("create as %s: %v", certBase, err)
	}
	value, _, _ := unstructured.NestedString(out.Object, "status", "value")
	return out.GetName(), h.remember(value)
}

func names(list *unstructured.UnstructuredList) []string {
	if list == nil {
		return nil
	}
	var out []string
	for _, it := range list.Items {
		out = append(out, it.GetName())
	}
	slices.Sort(out)
	return out
}

func TestUserTokensAuthorizationMatrix(t *testing.T) {
	h := startServer(t, nil)
	h.writeCert("alice", "alice", "developers")
	h.writeCert("bob", "bob", "testers")
	h.writeCert("sysadmin", "system:admin", "system:masters")
	ctx := context.Background()
	alice, bob, admin := h.tokensAs("alice"), h.tokensAs("bob"), h.tokensAs(adminBase)

	a1, _ := h.createToken("alice", map[string]any{"description": "first"})
	a2, _ := h.createToken("alice", map[string]any{"ttl": int64(7200000)})
	b1, _ := h.createToken("bob", nil)

	t.Run("create", func(t *testing.T) {
		_, err := alice.Create(ctx, tokenObject(map[string]any{"userID": "bob"}), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("alice creating for bob: %v, want Forbidden", err)
		}
		_, err = h.tokensAs("sysadmin").Create(ctx, tokenObject(nil), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "tokens.ext.cattle.io is forbidden: user system:admin is not a Portcullis user") {
			t.Fatalf("system:admin creating: %v", err)
		}
		for _, ttl := range []int64{-1, int64(91 * 24 * time.Hour / time.Millisecond)} {
			_, err := alice.Create(ctx, tokenObject(map[string]any{"ttl": ttl}), metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.ttl") {
				t.Fatalf("ttl %d: %v, want 422 naming spec.ttl", ttl, err)
			}
		}
		// metadata.name and generateName are ignored.
		obj := tokenObject(nil)
		obj.SetName("mine")
		out, err := alice.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil || !strings.HasPrefix(out.GetName(), "token-") || len(out.GetName()) != len("token-")+10 {
			t.Fatalf("created %q, %v; want token- and 10 characters", out.GetName(), err)
		}
		h.remember(unstructuredString(out, "status", "value"))
		if ttl, _, _ := unstructured.NestedInt64(out.Object, "spec", "ttl"); ttl != int64(90*24*time.Hour/time.Millisecond) {
			t.Fatalf("default ttl = %d, want 90 days", ttl)
		}
		if err := alice.Delete(ctx, out.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("get and list", func(t *testing.T) {
		for _, name := range []string{a1, a2} {
			got, err := alice.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("alice get own %s: %v", name, err)
			}
			if v := unstructuredString(got, "status", "value"); v != "" {
				t.Fatal("get returns the token value")
			}
		}
		if _, err := alice.Get(ctx, b1, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("alice get bob's: %v, want NotFound", err)
		}
		if _, err := admin.Get(ctx, b1, metav1.GetOptions{}); err != nil {
			t.Fatalf("admin get bob's: %v", err)
		}
		list, err := alice.List(ctx, metav1.ListOptions{})
		if err != nil || !slices.Equal(names(list), sortedOf(a1, a2)) {
			t.Fatalf("alice list = %v, %v; want her own %v", names(list), err, sortedOf(a1, a2))
		}
		list, err = bob.List(ctx, metav1.ListOptions{FieldSelector: "spec.userID=alice"})
		if err != nil || len(list.Items) != 0 {
			t.Fatalf("bob selecting alice's: %v, %v; want none", names(list), err)
		}
		list, err = admin.List(ctx, metav1.ListOptions{})
		if err != nil || !slices.Equal(names(list), sortedOf(a1, a2, b1)) {
			t.Fatalf("admin list = %v, %v", names(list), err)
		}
	})

	t.Run("update", func(t *testing.T) {
		patch := func(r dynamic.ResourceInterface, name, body string) error {
			_, err := r.Patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{})
			return err
		}
		if err := patch(alice, a1, `{"spec":{"description":"renamed"},"metadata":{"labels":{"team":"a"}}}`); err != nil {
			t.Fatalf("alice edits her own: %v", err)
		}
		if err := patch(alice, b1, `{"spec":{"description":"mine now"}}`); !apierrors.IsNotFound(err) {
			t.Fatalf("alice edits bob's: %v, want NotFound", err)
		}
		if err := patch(alice, a2, `{"spec":{"ttl":3600000}}`); err != nil {
			t.Fatalf("alice shortens her ttl: %v", err)
		}
		if err := patch(alice, a2, `{"spec":{"ttl":7200000}}`); !apierrors.IsForbidden(err) {
			t.Fatalf("alice extends her ttl: %v, want Forbidden", err)
		}
		if err := patch(admin, a2, `{"spec":{"ttl":86400000}}`); err != nil {
			t.Fatalf("admin extends alice's ttl: %v", err)
		}
		if err := patch(alice, a1, `{"spec":{"kind":"session"}}`); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.kind") {
			t.Fatalf("alice changes spec.kind: %v, want 422 naming spec.kind", err)
		}
		if err := patch(alice, a1, `{"spec":{"userID":"bob"}}`); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.userID") {
			t.Fatalf("alice changes spec.userID: %v, want 422 naming spec.userID", err)
		}
		got, _ := alice.Get(ctx, a1, metav1.GetOptions{})
		if d := unstructuredString(got, "spec", "description"); d != "renamed" || got.GetLabels()["team"] != "a" {
			t.Fatalf("after edit: description %q labels %v", d, got.GetLabels())
		}
		list, err := alice.List(ctx, metav1.ListOptions{LabelSelector: "team=a"})
		if err != nil || !slices.Equal(names(list), []string{a1}) {
			t.Fatalf("label selector: %v, %v", names(list), err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := alice.Delete(ctx, b1, metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("alice deletes bob's: %v, want NotFound", err)
		}
		b2, _ := h.createToken("bob", nil)
		if err := admin.Delete(ctx, b2, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("admin deletes bob's: %v", err)
		}
		// deletecollection as alice removes only her own.
		if err := alice.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		list, _ := admin.List(ctx, metav1.ListOptions{})
		if !slices.Equal(names(list), []string{b1}) {
			t.Fatalf("after alice's deletecollection: %v, want only bob's %s", names(list), b1)
		}
	})

	t.Run("watch shows only the caller's tokens", func(t *testing.T) {
		w, err := alice.Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		h.createToken("bob", nil)
		mine, _ := h.createToken("alice", nil)
		e := <-w.ResultChan()
		if e.Type != watch.Added || e.Object.(*unstructured.Unstructured).GetName() != mine {
			t.Fatalf("first event = %s %v, want ADDED %s (bob's is not hers)", e.Type, e.Object, mine)
		}
	})
}

func sortedOf(s ...string) []string { slices.Sort(s); return s }

func unstructuredString(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, path...)
	return v
}

func TestUserTokensAuthenticateAsTheirOwner(t *testing.T) {
	h := startServer(t, nil)
	h.writeCert("alice", "alice", "developers", "qa")
	ctx := context.Background()
	alice := h.tokensAs("alice")
	wh := kubeAPIServerAuthenticator(t, h, "v1")
	apiCtx := authenticator.WithAudiences(ctx, authenticator.Audiences(h.cfg.APIAudiences))
	review := func(token string) (bool, []string) {
		t.Helper()
		resp, ok, err := wh.AuthenticateToken(apiCtx, token)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false, nil
		}
		if resp.User.GetName() != "alice" {
			t.Fatalf("user = %q, want alice", resp.User.GetName())
		}
		return true, resp.User.GetGroups()
	}

	_, plain := h.createToken("alice", nil)
	ok, groups := review(plain)
	if !ok || !slices.Contains(groups, "developers") || !slices.Contains(groups, "qa") {
		t.Fatalf("user token: authenticated %v groups %v", ok, groups)
	}

	disabled, v := h.createToken("alice", nil)
	if ok, _ := review(v); !ok {
		t.Fatal("fresh token refused")
	}
	if _, err := alice.Patch(ctx, disabled, types.MergePatchType, []byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := review(v); ok {
		t.Fatal("disabled token still authenticates")
	}

	deleted, v := h.createToken("alice", nil)
	review(v)
	if err := alice.Delete(ctx, deleted, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := review(v); ok {
		t.Fatal("deleted token still authenticates")
	}

	// ttl reduced below the token's age (1ms: it was reviewed since): expired at once.
	short, v := h.createToken("alice", nil)
	review(v)
	if _, err := alice.Patch(ctx, short, types.MergePatchType, []byte(`{"spec":{"ttl":1}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := review(v); ok {
		t.Fatal("token whose ttl was reduced into the past still authenticates")
	}
	got, _ := alice.Get(ctx, short, metav1.GetOptions{})
	if expired, _, _ := unstructured.NestedBool(got.Object, "status", "expired"); !expired {
		t.Fatal("status.expired is false after the ttl passed")
	}

	// lastUsedAt is written off the review path.
	h.stop() // flushes queued lastUsedAt
	h.start()
	got, err := h.tokensAs("alice").Get(ctx, strings.TrimSpace(firstName(t, h.tokensAs("alice"))), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if unstructuredString(got, "status", "lastUsedAt") == "" {
		t.Fatalf("lastUsedAt not set on a used token: %v", got.Object["status"])
	}
}

// firstName is the name of the oldest token the caller sees.
func firstName(t *testing.T, r dynamic.NamespaceableResourceInterface) string {
	t.Helper()
	list, err := r.List(context.Background(), metav1.ListOptions{})
	if err != nil || len(list.Items) == 0 {
		t.Fatalf("list: %v", err)
	}
	return list.Items[0].GetName()
}

func TestUserTokensLimitAndFeatureGate(t *testing.T) {
	h := startServer(t, func(c *config.Config) { c.UserTokens.MaxPerUser = 2 })
	h.writeCert("alice", "alice")
	h.createToken("alice", nil)
	h.createToken("alice", nil)
	_, err := h.tokensAs("alice").Create(context.Background(), tokenObject(nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "already has 2 tokens") {
		t.Fatalf("third token: %v, want Forbidden naming the limit", err)
	}

	// Creates that arrive together cannot all pass the limit: the store
	// counts and writes in one step.
	h.writeCert("bob", "bob")
	bob := h.tokensAsUnlimited("bob")
	if _, err := bob.List(context.Background(), metav1.ListOptions{}); err != nil { // the connection, open before the creates
		t.Fatal(err)
	}
	const tries = 16
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	start := make(chan struct{})
	for range tries {
		wg.Go(func() {
			<-start
			_, err := bob.Create(context.Background(), tokenObject(nil), metav1.CreateOptions{})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	created := 0
	for err := range errs {
		switch {
		case err == nil:
			created++
		case !apierrors.IsForbidden(err):
			t.Errorf("concurrent create: %v, want success or 403", err)
		}
	}
	if created != 2 {
		t.Fatalf("%d of %d concurrent creates succeeded with a limit of 2", created, tries)
	}

	off := startServer(t, func(c *config.Config) { c.FeatureGates = map[string]bool{config.UserTokens: false} })
	resp, err := off.adminHTTP().Get(off.issuerURL("/apis/ext.cattle.io/v1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/apis/ext.cattle.io/v1 with UserTokens=false: %d, want 404", resp.StatusCode)
	}
	resp, err = off.adminHTTP().Get(off.issuerURL("/apis"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 64<<10)
	n, _ := resp.Body.Read(buf)
	body.Write(buf[:n])
	if strings.Contains(body.String(), "ext.cattle.io") {
		t.Fatal("discovery lists ext.cattle.io with the gate off")
	}
}

// signingKeys is the SigningKey resource as the admin.
func (h *harness) signingKeys() dynamic.NamespaceableResourceInterface {
	h.t.Helper()
	c, err := dynamic.NewForConfig(h.restConfig(AdminKubeconfig))
	if err != nil {
		h.t.Fatal(err)
	}
	return c.Resource(v1alpha1.SchemeGroupVersion.WithResource("signingkeys"))
}

// TestUserTokensListInPages: a list with a limit (kubectl --chunk-size)
// comes in pages that together hold each of the caller's tokens once; a
// continue token of another listing is a 400.
func TestUserTokensListInPages(t *testing.T) {
	h := startServer(t, nil)
	ctx := context.Background()
	h.writeCert("alice", "alice")
	h.writeCert("bob", "bob")
	var want []string
	for range 12 {
		name, _ := h.createToken("alice", nil)
		want = append(want, name)
	}
	h.createToken("bob", nil)
	var got []string
	opts := metav1.ListOptions{Limit: 5}
	pages := 0
	for {
		list, err := h.tokensAs("alice").List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) > 5 {
			t.Fatalf("a page of %d tokens with limit 5", len(list.Items))
		}
		got = append(got, names(list)...)
		pages++
		if list.GetContinue() == "" {
			break
		}
		opts.Continue = list.GetContinue()
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("alice's tokens in %d pages: %v; want %v in 3", pages, got, want)
	}
	first, err := h.tokensAs("alice").List(ctx, metav1.ListOptions{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.tokensAs("bob").List(ctx, metav1.ListOptions{Limit: 5, Continue: first.GetContinue()})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("bob paging with alice's continue token: %v, want 400", err)
	}
}
