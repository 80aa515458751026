package vnc

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

// capture is a Minter that keeps the request and answers a fixed token.
type capture struct {
	req *issuer.Request
	err error
}

func (c *capture) Mint(_ context.Context, req issuer.Request) (*issuer.Token, error) {
	if c.err != nil {
		return nil, c.err
	}
	c.req = &req
	return &issuer.Token{Value: "a.b.c", Record: &store.Record{ExpiresAt: time.Date(2026, 12, 2, 10, 10, 0, 0, time.UTC)}}, nil
}

// revocations is a Revoker that keeps what it was given.
type revocations struct {
	got []*store.Revocation
	err error
}

func (r *revocations) Revoke(_ context.Context, rev *store.Revocation) error {
	if r.err != nil {
		return r.err
	}
	r.got = append(r.got, rev)
	return nil
}

// vms is a Cluster with the VMs it knows, by namespace/name.
type vms map[string]string

func (v vms) EnsureVMAccess(_ context.Context, ns, vm string) (string, error) {
	if uid, ok := v[ns+"/"+vm]; ok {
		return uid, nil
	}
	if ns == "broken" {
		return "", errors.New("etcdserver: request timed out (internal detail)")
	}
	return "", apierrors.NewNotFound(schema.GroupResource{Group: "kubevirt.io", Resource: "virtualmachines"}, vm)
}

func serve(t *testing.T, r *REST, method, ns, vm, query string) *httptest.ResponseRecorder {
	t.Helper()
	ctx := genericapirequest.WithNamespace(context.Background(), ns)
	ctx = genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: "alice"})
	h, err := r.Connect(ctx, vm, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/apis/token.kubevirt.io/v1/namespaces/"+ns+"/virtualmachines/"+vm+"/vnc"+query, nil).WithContext(ctx))
	return rec
}

func statusOf(t *testing.T, rec *httptest.ResponseRecorder) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Kind != "Status" {
		t.Fatalf("body %q is not a Status", rec.Body.String())
	}
	return st
}

func TestMintAsKubeVirtDoes(t *testing.T) {
	m := &capture{}
	r := New(m, &revocations{}, Options{APIAudiences: []string{"https://kubernetes.default.svc"}}, testingclock.NewFakeClock(time.Now()), rand.Reader)
	rec := serve(t, r, http.MethodGet, "vms", "vm1", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	var out struct{ Token, ExpirationTimestamp string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Token != "a.b.c" || out.ExpirationTimestamp != "2026-12-02T10:10:00Z" {
		t.Fatalf("answer %s", rec.Body.String())
	}
	req := m.req
	if req.Subject != "system:serviceaccount:vms:vm1-vnc-access" || req.Kind != store.KindVNC || !req.Stateless || req.Lifetime != 10*time.Minute {
		t.Fatalf("request %+v", req)
	}
	if !slices.Equal(req.Audiences, []string{"https://kubernetes.default.svc", DefaultAudience}) {
		t.Fatalf("audiences %v; want the API's and the VNC audience", req.Audiences)
	}
	if !slices.Equal(req.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:vms"}) ||
		!slices.Equal(req.Extra[token.ExtraVMName], []string{"vm1"}) || !slices.Equal(req.Extra[token.ExtraVMNamespace], []string{"vms"}) {
		t.Fatalf("identity %v %v", req.Groups, req.Extra)
	}
	if req.Binding != nil {
		t.Fatalf("standalone token bound to %+v", req.Binding)
	}
}

func TestDurationRules(t *testing.T) {
	r := New(&capture{}, &revocations{}, Options{MinDuration: time.Minute, MaxDuration: time.Hour}, testingclock.NewFakeClock(time.Now()), rand.Reader)
	for _, tc := range []struct {
		query string
		code  int
		want  time.Duration
	}{
		{"", http.StatusOK, 10 * time.Minute},
		{"?duration=90s", http.StatusOK, 90 * time.Second},
		{"?duration=90500ms", http.StatusOK, 90 * time.Second},
		{"?duration=59s", http.StatusBadRequest, 0},
		{"?duration=61m", http.StatusBadRequest, 0},
		{"?duration=ten", http.StatusBadRequest, 0},
	} {
		m := &capture{}
		r.minter = m
		rec := serve(t, r, http.MethodGet, "vms", "vm1", tc.query)
		if rec.Code != tc.code {
			t.Fatalf("%q: status %d, want %d (%s)", tc.query, rec.Code, tc.code, rec.Body.String())
		}
		if tc.code == http.StatusOK && m.req.Lifetime != tc.want {
			t.Fatalf("%q: lifetime %v, want %v", tc.query, m.req.Lifetime, tc.want)
		}
		if tc.code != http.StatusOK {
			if st := statusOf(t, rec); st.Reason != metav1.StatusReasonBadRequest || st.Message == "" {
				t.Fatalf("%q: %+v", tc.query, st)
			}
		}
	}
}

func TestClusterConnectedMint(t *testing.T) {
	m := &capture{}
	r := New(m, &revocations{}, Options{Cluster: vms{"vms/vm1": "sa-uid"}}, testingclock.NewFakeClock(time.Now()), rand.Reader)
	if rec := serve(t, r, http.MethodGet, "vms", "vm1", ""); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	want := store.BoundObject{APIVersion: "v1", Kind: "ServiceAccount", Namespace: "vms", Name: "vm1-vnc-access", UID: "sa-uid"}
	if m.req.Binding == nil || *m.req.Binding != want {
		t.Fatalf("binding %+v, want %+v", m.req.Binding, want)
	}
	rec := serve(t, r, http.MethodGet, "vms", "nope", "")
	if st := statusOf(t, rec); rec.Code != http.StatusNotFound || st.Reason != metav1.StatusReasonNotFound {
		t.Fatalf("missing VM: %d %+v", rec.Code, st)
	}
	rec = serve(t, r, http.MethodGet, "broken", "vm1", "")
	if st := statusOf(t, rec); rec.Code != http.StatusInternalServerError || st.Message == "" || containsAny(st.Message, "etcdserver", "internal detail") {
		t.Fatalf("cluster error: %d %+v; want a 500 without the cause", rec.Code, st)
	}
}

func TestMintFailureHidesTheCause(t *testing.T) {
	r := New(&capture{err: errors.New("bolt: /var/lib/portcullis/portcullis.db: disk full")}, &revocations{}, Options{}, testingclock.NewFakeClock(time.Now()), rand.Reader)
	rec := serve(t, r, http.MethodGet, "vms", "vm1", "")
	if st := statusOf(t, rec); rec.Code != http.StatusInternalServerError || containsAny(st.Message, "/var/lib", "disk full") {
		t.Fatalf("%d %+v; want a 500 without the cause", rec.Code, st)
	}
}

func TestRevokeMarksTheVM(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	revs := &revocations{}
	r := New(&capture{}, revs, Options{}, clk, rand.Reader)
	rec := serve(t, r, http.MethodDelete, "vms", "vm1", "")
	if st := statusOf(t, rec); rec.Code != http.StatusOK || st.Status != metav1.StatusSuccess {
		t.Fatalf("%d %+v", rec.Code, st)
	}
	if len(revs.got) != 1 {
		t.Fatalf("%d revocations", len(revs.got))
	}
	rev := revs.got[0]
	if rev.Scope != store.ScopeSubject || rev.Target != "system:serviceaccount:vms:vm1-vnc-access" || !rev.Created.Equal(clk.Now()) || rev.RevokedBy != "alice" || rev.Name == "" || rev.UID == "" {
		t.Fatalf("revocation %+v", rev)
	}
	revs.err = errors.New("etcdserver: no leader")
	rec = serve(t, r, http.MethodDelete, "vms", "vm1", "")
	if st := statusOf(t, rec); rec.Code != http.StatusServiceUnavailable || containsAny(st.Message, "etcdserver") {
		t.Fatalf("store down: %d %+v; want a 503 without the cause", rec.Code, st)
	}
	if rec := serve(t, r, http.MethodPost, "vms", "vm1", ""); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}
