package signingkeys

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"portcullis.dev/portcullis/keys/keystest"
	"portcullis.dev/portcullis/store/bolt/bolttest"

	"github.com/lestrrat-go/jwx/v2/jwa"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
)

// records is the store as the resource sees it: records by key id.
type records struct {
	byKey map[string][]*store.Record
	err   error
}

func (r records) ListRecords(_ context.Context, opts store.ListOptions) (*store.RecordList, error) {
	if r.err != nil {
		return nil, r.err
	}
	return &store.RecordList{Items: r.byKey[opts.KeyID]}, nil
}

// newREST is the resource over a real key manager on a real bbolt store,
// with one active key (imported from a key directory).
func newREST(t *testing.T, recs records) (*REST, *keys.Key, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	k := keystest.NewKey(t, keys.StateActive, clk.Now())
	dir := t.TempDir()
	if err := keys.SaveDir(dir, []*keys.Key{k}); err != nil {
		t.Fatal(err)
	}
	ring := keystest.NewRing(t)
	s := bolttest.Open(t)
	kek := make([]byte, keys.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	enc := keys.NewEncryption("file", keys.NewAESService(kek, rand.Reader))
	m := keys.NewManager(ring, keys.ManagerOptions{Store: s, Encryption: enc, Algorithm: jwa.ES256, PropagationDelay: time.Hour, Clock: clk, Rand: rand.Reader})
	if err := m.Load(t.Context(), dir); err != nil { // imports k
		t.Fatal(err)
	}
	return New(m, recs, clk), k, clk
}

func create(t *testing.T, r *REST, spec v1alpha1.SigningKeySpec, opts *metav1.CreateOptions) (*v1alpha1.SigningKey, error) {
	t.Helper()
	if opts == nil {
		opts = &metav1.CreateOptions{}
	}
	out, err := r.Create(context.Background(), &v1alpha1.SigningKey{Spec: spec}, nil, opts)
	if err != nil {
		return nil, err
	}
	return out.(*v1alpha1.SigningKey), nil
}

func update(t *testing.T, r *REST, name string, mod func(*v1alpha1.SigningKey)) (runtime.Object, error) {
	t.Helper()
	obj, _, err := r.Update(context.Background(), name, rest.DefaultUpdatedObjectInfo(nil, func(_ context.Context, _, old runtime.Object) (runtime.Object, error) {
		k := old.(*v1alpha1.SigningKey).DeepCopy()
		mod(k)
		return k, nil
	}), nil, nil, false, &metav1.UpdateOptions{})
	return obj, err
}

func TestRotateCreatesTheNextKey(t *testing.T) {
	r, active, _ := newREST(t, records{})
	next, err := create(t, r, v1alpha1.SigningKeySpec{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.Status.State != string(keys.StateNext) || next.Spec.Algorithm != "ES256" || next.UID == "" || next.Status.PromoteAt == nil {
		t.Fatalf("new key %+v; want a next ES256 key with a uid and a promotion time", next)
	}
	if _, err := create(t, r, v1alpha1.SigningKeySpec{}, nil); !apierrors.IsConflict(err) {
		t.Fatalf("second rotation while one is pending: %v; want 409", err)
	}
	list, _ := r.List(context.Background(), nil)
	if n := len(list.(*v1alpha1.SigningKeyList).Items); n != 2 {
		t.Fatalf("%d keys listed, want 2", n)
	}
	got, err := r.Get(context.Background(), active.ID, nil)
	if err != nil || got.(*v1alpha1.SigningKey).Status.State != string(keys.StateActive) {
		t.Fatalf("Get(active) = %+v, %v", got, err)
	}
	if _, err := r.Get(context.Background(), "nope", nil); !apierrors.IsNotFound(err) {
		t.Fatalf("Get(unknown) = %v; want 404", err)
	}
	table, err := r.ConvertToTable(context.Background(), list, nil)
	if err != nil || len(table.Rows) != 2 || len(table.ColumnDefinitions) != 4 {
		t.Fatalf("table %+v, %v", table, err)
	}
}

func TestRotateNowSignsAtOnce(t *testing.T) {
	r, old, _ := newREST(t, records{})
	k, err := create(t, r, v1alpha1.SigningKeySpec{Immediate: true, Algorithm: "EdDSA"}, nil)
	if err != nil || k.Status.State != string(keys.StateActive) || k.Spec.Algorithm != "EdDSA" {
		t.Fatalf("immediate rotation: %+v, %v", k, err)
	}
	if got, _ := r.Get(context.Background(), old.ID, nil); got.(*v1alpha1.SigningKey).Status.State != string(keys.StateVerifying) {
		t.Fatalf("the old key is %s, want verifying", got.(*v1alpha1.SigningKey).Status.State)
	}
}

func TestCreateRefusals(t *testing.T) {
	r, _, _ := newREST(t, records{})
	for name, tc := range map[string]struct {
		spec v1alpha1.SigningKeySpec
		opts *metav1.CreateOptions
		want func(error) bool
	}{
		"HS256":       {spec: v1alpha1.SigningKeySpec{Algorithm: "HS256"}, want: apierrors.IsInvalid},
		"none":        {spec: v1alpha1.SigningKeySpec{Algorithm: "none"}, want: apierrors.IsInvalid},
		"retired new": {spec: v1alpha1.SigningKeySpec{Retired: true}, want: apierrors.IsInvalid},
		"dry run":     {opts: &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}, want: apierrors.IsBadRequest},
	} {
		if _, err := create(t, r, tc.spec, tc.opts); !tc.want(err) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if list, _ := r.List(context.Background(), nil); len(list.(*v1alpha1.SigningKeyList).Items) != 1 {
		t.Fatal("a refused create changed the ring")
	}
}

func TestRetireIsOneWay(t *testing.T) {
	r, old, _ := newREST(t, records{})
	if _, err := create(t, r, v1alpha1.SigningKeySpec{Immediate: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := update(t, r, old.ID, func(k *v1alpha1.SigningKey) { k.Spec.Algorithm = "RS256" }); !apierrors.IsInvalid(err) {
		t.Fatalf("changing the algorithm: %v; want 422", err)
	}
	obj, err := update(t, r, old.ID, func(k *v1alpha1.SigningKey) { k.Spec.Retired = true })
	if err != nil || obj.(*v1alpha1.SigningKey).Status.State != string(keys.StateRetired) {
		t.Fatalf("retire: %+v, %v", obj, err)
	}
	if _, err := r.manager.Ring().VerificationKey(old.ID); !errors.Is(err, keys.ErrRetiredKey) {
		t.Fatalf("the ring still verifies the retired key: %v", err)
	}
	if _, err := update(t, r, old.ID, func(k *v1alpha1.SigningKey) { k.Spec.Retired = false }); !apierrors.IsInvalid(err) {
		t.Fatalf("un-retiring: %v; want 422", err)
	}
}

func TestPruneOnlyKeysWithoutLiveTokens(t *testing.T) {
	recs := records{byKey: map[string][]*store.Record{}}
	r, old, clk := newREST(t, recs)
	if _, err := create(t, r, v1alpha1.SigningKeySpec{Immediate: true}, nil); err != nil {
		t.Fatal(err)
	}
	recs.byKey[old.ID] = []*store.Record{{JTI: "j", KeyID: old.ID, ExpiresAt: clk.Now().Add(time.Hour)}}
	if _, _, err := r.Delete(context.Background(), old.ID, nil, &metav1.DeleteOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("pruning a key with a live token: %v; want 409", err)
	}
	broken := records{err: errors.New("etcdserver: no leader")}
	r.records = broken
	if _, _, err := r.Delete(context.Background(), old.ID, nil, &metav1.DeleteOptions{}); !apierrors.IsServiceUnavailable(err) || strings.Contains(err.Error(), "etcdserver") {
		t.Fatalf("store down: %v; want a 503 without the cause", err)
	}
	r.records = recs
	clk.Step(2 * time.Hour)
	if _, deleted, err := r.Delete(context.Background(), old.ID, nil, &metav1.DeleteOptions{}); err != nil || !deleted {
		t.Fatalf("pruning a key whose tokens all expired: %v, %v", deleted, err)
	}
	if _, err := r.Get(context.Background(), old.ID, nil); !apierrors.IsNotFound(err) {
		t.Fatalf("pruned key still there: %v", err)
	}
	if _, _, err := r.Delete(context.Background(), "nope", nil, &metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pruning an unknown key: %v; want 404", err)
	}
}
