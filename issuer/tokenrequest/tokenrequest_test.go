package tokenrequest

import (
	"context"
	"net/http"
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/store"
)

// fakeCluster holds the objects a TokenRequest may name; the front door's
// rules are under test, the real kube-apiserver is in test/e2e.
type fakeCluster struct {
	sas     map[string]*corev1.ServiceAccount
	pods    map[string]*corev1.Pod
	nodes   map[string]*corev1.Node
	secrets map[string]*metav1.PartialObjectMetadata
}

func notFound(resource, name string) error {
	return apierrors.NewNotFound(schema.GroupResource{Resource: resource}, name)
}

func (f fakeCluster) ServiceAccount(_ context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	if sa, ok := f.sas[ns+"/"+name]; ok {
		return sa, nil
	}
	return nil, notFound("serviceaccounts", name)
}
func (f fakeCluster) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	if p, ok := f.pods[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, notFound("pods", name)
}
func (f fakeCluster) Node(_ context.Context, name string) (*corev1.Node, error) {
	if n, ok := f.nodes[name]; ok {
		return n, nil
	}
	return nil, notFound("nodes", name)
}
func (f fakeCluster) Secret(_ context.Context, ns, name string) (*metav1.PartialObjectMetadata, error) {
	if s, ok := f.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, notFound("secrets", name)
}

// capture is a Minter that keeps the request instead of signing.
type capture struct{ req *issuer.Request }

func (c *capture) Mint(_ context.Context, req issuer.Request) (*issuer.Token, error) {
	c.req = &req
	return &issuer.Token{Value: "v", Record: &store.Record{JTI: "j"}}, nil
}

func cluster() fakeCluster {
	meta := func(ns, name, uid string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)}
	}
	return fakeCluster{
		sas: map[string]*corev1.ServiceAccount{"apps/web": {ObjectMeta: meta("apps", "web", "sa-uid")}},
		pods: map[string]*corev1.Pod{
			"apps/web-0": {ObjectMeta: meta("apps", "web-0", "pod-uid"), Spec: corev1.PodSpec{ServiceAccountName: "web", NodeName: "n1"}},
			"apps/other": {ObjectMeta: meta("apps", "other", "other-uid"), Spec: corev1.PodSpec{ServiceAccountName: "db"}},
		},
		nodes:   map[string]*corev1.Node{"n1": {ObjectMeta: meta("", "n1", "node-uid")}},
		secrets: map[string]*metav1.PartialObjectMetadata{"apps/s": {ObjectMeta: meta("apps", "s", "secret-uid")}},
	}
}

func create(t *testing.T, c Cluster, sa string, ref *authenticationv1.BoundObjectReference) (*capture, error) {
	t.Helper()
	m := &capture{}
	r := New(m, Options{APIAudiences: []string{"api"}, Cluster: c})
	ctx := genericapirequest.WithNamespace(context.Background(), "apps")
	_, err := r.Create(ctx, sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref}}, nil, &metav1.CreateOptions{})
	return m, err
}

func code(err error) int32 {
	if st, ok := err.(apierrors.APIStatus); ok {
		return st.Status().Code
	}
	return 0
}

func TestStandaloneRefusesBoundTokens(t *testing.T) {
	_, err := create(t, nil, "web", &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web-0"})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("standalone, bound: %v; want 422", err)
	}
	m, err := create(t, nil, "anyone", nil)
	if err != nil || m.req.ServiceAccount != nil || m.req.Binding != nil {
		t.Fatalf("standalone, unbound: %v %+v; want minted, nothing to check", err, m.req)
	}
}

func TestClusterChecksWhatTheTokenIsBoundTo(t *testing.T) {
	pod := func(name, uid string) *authenticationv1.BoundObjectReference {
		return &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: name, UID: types.UID(uid)}
	}
	for name, tc := range map[string]struct {
		sa   string
		ref  *authenticationv1.BoundObjectReference
		want int32
	}{
		"ServiceAccount missing":        {"ghost", nil, http.StatusNotFound},
		"Pod missing":                   {"web", pod("ghost", ""), http.StatusNotFound},
		"Pod uid differs":               {"web", pod("web-0", "stale-uid"), http.StatusConflict},
		"Pod runs as another account":   {"web", pod("other", ""), http.StatusBadRequest},
		"Secret missing":                {"web", &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Secret", Name: "nope"}, http.StatusNotFound},
		"a kind tokens cannot bind to":  {"web", &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "ConfigMap", Name: "c"}, http.StatusBadRequest},
		"a group tokens cannot bind to": {"web", &authenticationv1.BoundObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "d"}, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := create(t, cluster(), tc.sa, tc.ref); code(err) != tc.want {
				t.Fatalf("%v; want %d", err, tc.want)
			}
		})
	}

	t.Run("Pod: uids recorded, extras from the objects read", func(t *testing.T) {
		m, err := create(t, cluster(), "web", pod("web-0", ""))
		if err != nil {
			t.Fatal(err)
		}
		r := m.req
		if r.UID != "sa-uid" || r.ServiceAccount == nil || r.ServiceAccount.UID != "sa-uid" || r.ServiceAccount.Namespace != "apps" {
			t.Fatalf("ServiceAccount binding %+v, uid %q", r.ServiceAccount, r.UID)
		}
		if b := r.Binding; b == nil || b.Kind != "Pod" || b.UID != "pod-uid" || b.Namespace != "apps" {
			t.Fatalf("Pod binding %+v; want the uid filled in from the Pod", b)
		}
		for k, want := range map[string]string{ExtraPodName: "web-0", ExtraPodUID: "pod-uid", ExtraNodeName: "n1", ExtraNodeUID: "node-uid"} {
			if !slices.Equal(r.Extra[k], []string{want}) {
				t.Fatalf("extra %s = %v, want %s", k, r.Extra[k], want)
			}
		}
	})
	t.Run("Secret: uid recorded, no pod extras", func(t *testing.T) {
		m, err := create(t, cluster(), "web", &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Secret", Name: "s", UID: "secret-uid"})
		if err != nil {
			t.Fatal(err)
		}
		if b := m.req.Binding; b == nil || b.UID != "secret-uid" || len(m.req.Extra) != 0 {
			t.Fatalf("binding %+v, extra %v", b, m.req.Extra)
		}
	})
}
