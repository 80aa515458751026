package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/store"
)

// fakeBindings says which objects exist, by kind/namespace/name -> uid.
type fakeBindings struct {
	objects map[string]string
	err     error
}

func (f fakeBindings) Exists(b *store.BoundObject) (bool, error) {
	if f.err != nil {
		return false, f.err
	}
	uid, ok := f.objects[b.Kind+"/"+b.Namespace+"/"+b.Name]
	return ok && uid == b.UID, nil
}

// TestBoundTokensDieWithWhatTheyAreBoundTo: a TokenRequest token minted
// bound to its ServiceAccount and a Pod is refused once either is gone or
// was recreated (another uid), undecided while the informers have not
// synced, and refused where nothing can check (standalone).
func TestBoundTokensDieWithWhatTheyAreBoundTo(t *testing.T) {
	f := newFixture(t)
	tok, err := f.minter.Mint(context.Background(), issuer.Request{
		Kind: store.KindServiceAccount, Subject: "system:serviceaccount:apps:web", UID: "sa-uid",
		Audiences: []string{testAudience}, Lifetime: time.Hour,
		ServiceAccount: &store.BoundObject{Kind: "ServiceAccount", Namespace: "apps", Name: "web", UID: "sa-uid"},
		Binding:        &store.BoundObject{APIVersion: "v1", Kind: "Pod", Namespace: "apps", Name: "web-0", UID: "pod-uid"},
	})
	if err != nil {
		t.Fatal(err)
	}
	both := map[string]string{"ServiceAccount/apps/web": "sa-uid", "Pod/apps/web-0": "pod-uid"}
	without := func(key string) map[string]string {
		m := map[string]string{}
		for k, v := range both {
			if k != key {
				m[k] = v
			}
		}
		return m
	}
	recreated := without("Pod/apps/web-0")
	recreated["Pod/apps/web-0"] = "new-uid"
	errNotSynced := errors.New("not synced")
	for name, tc := range map[string]struct {
		bindings Bindings
		want     Reason
		undecide bool
	}{
		"both there":                 {bindings: fakeBindings{objects: both}},
		"ServiceAccount deleted":     {bindings: fakeBindings{objects: without("ServiceAccount/apps/web")}, want: ReasonBindingGone},
		"Pod deleted":                {bindings: fakeBindings{objects: without("Pod/apps/web-0")}, want: ReasonBindingGone},
		"Pod recreated":              {bindings: fakeBindings{objects: recreated}, want: ReasonBindingGone},
		"informers not synced":       {bindings: fakeBindings{err: errNotSynced}, undecide: true},
		"nothing to check them with": {bindings: nil, want: ReasonBindingGone},
	} {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(t, f.ring, f.state, VerifierOptions{Issuer: testIssuer, APIAudiences: []string{testAudience}, Clock: f.clock, Bindings: tc.bindings})
			res, err := v.Review(context.Background(), tok.Value, nil)
			switch {
			case tc.undecide:
				if err == nil {
					t.Fatalf("decided %+v; want undecided (fail closed, 503)", res)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "" && !res.Authenticated():
				t.Fatalf("refused (%s); want authenticated", res.Reason)
			case tc.want != "" && res.Reason != tc.want:
				t.Fatalf("reason %q (authenticated %v); want %q", res.Reason, res.Authenticated(), tc.want)
			}
		})
	}
}

// TestObjectBindingsMatchKindNameAndUID runs ObjectBindings over real
// client-go indexers, as the informers fill them: an object counts only
// with the recorded kind, namespace, name and uid, and not while it is
// being deleted.
func TestObjectBindingsMatchKindNameAndUID(t *testing.T) {
	sas := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	now := metav1.Now()
	for _, add := range []struct {
		into cache.Indexer
		obj  any
	}{
		{sas, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web", UID: "sa-uid"}}},
		{pods, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web-0", UID: "pod-uid"}}},
		{pods, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web-1", UID: "dying-uid", DeletionTimestamp: &now}}},
		{nodes, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid"}}},
	} {
		if err := add.into.Add(add.obj); err != nil {
			t.Fatal(err)
		}
	}
	synced := true
	b := ObjectBindings{
		Listers: map[string]cache.GenericLister{
			"ServiceAccount": cache.NewGenericLister(sas, corev1.Resource("serviceaccounts")),
			"Pod":            cache.NewGenericLister(pods, corev1.Resource("pods")),
			"Node":           cache.NewGenericLister(nodes, corev1.Resource("nodes")),
		},
		Synced: func() bool { return synced },
	}
	for _, tc := range []struct {
		name string
		obj  store.BoundObject
		want bool
	}{
		{"ServiceAccount with its uid", store.BoundObject{Kind: "ServiceAccount", Namespace: "apps", Name: "web", UID: "sa-uid"}, true},
		{"ServiceAccount recreated (other uid)", store.BoundObject{Kind: "ServiceAccount", Namespace: "apps", Name: "web", UID: "old-uid"}, false},
		{"ServiceAccount in another namespace", store.BoundObject{Kind: "ServiceAccount", Namespace: "other", Name: "web", UID: "sa-uid"}, false},
		{"Pod with its uid", store.BoundObject{Kind: "Pod", Namespace: "apps", Name: "web-0", UID: "pod-uid"}, true},
		{"Pod being deleted", store.BoundObject{Kind: "Pod", Namespace: "apps", Name: "web-1", UID: "dying-uid"}, false},
		{"Pod gone", store.BoundObject{Kind: "Pod", Namespace: "apps", Name: "web-2", UID: "pod-uid"}, false},
		{"Node (cluster-scoped) with its uid", store.BoundObject{Kind: "Node", Name: "node-a", UID: "node-uid"}, true},
		{"a kind nothing watches", store.BoundObject{Kind: "Secret", Namespace: "apps", Name: "web", UID: "sa-uid"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.Exists(&tc.obj)
			if err != nil || got != tc.want {
				t.Fatalf("Exists = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	synced = false
	if _, err := b.Exists(&store.BoundObject{Kind: "Pod", Namespace: "apps", Name: "web-0", UID: "pod-uid"}); !errors.Is(err, ErrBindingsNotSynced) {
		t.Fatalf("before the informers synced: %v; want ErrBindingsNotSynced", err)
	}
}
