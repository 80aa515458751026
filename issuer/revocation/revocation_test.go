package revocation

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	"portcullis.dev/portcullis/internal/fanout"
	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/store"
)

// brokenStore is a Revoker whose store fails with an error naming internal
// detail (a file path and an etcd endpoint), as bbolt and etcd errors do.
type brokenStore struct{}

var errInternal = errors.New("open /var/lib/portcullis/data/portcullis.db: input/output error (etcd 10.0.0.7:2379)")

func (brokenStore) Revoke(context.Context, *store.Revocation) error { return errInternal }
func (brokenStore) Revocation(context.Context, string) (*store.Revocation, error) {
	return nil, errInternal
}
func (brokenStore) Revocations(context.Context) ([]*store.Revocation, error) { return nil, errInternal }
func (brokenStore) Watch() (*fanout.Watcher[*store.Revocation], error) {
	return fanout.New[*store.Revocation](1).Watch(nil)
}

// TestStoreErrorsStayInTheLog: a store failure is a 503 that says what
// failed and to retry, never the store's own error (paths, endpoints).
func TestStoreErrorsStayInTheLog(t *testing.T) {
	r := New(brokenStore{}, testingclock.NewFakeClock(time.Now()), rand.Reader)
	ctx := context.Background()
	_, createErr := r.Create(ctx, &v1alpha1.Revocation{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1alpha1.RevocationSpec{Subject: "u"}}, nil, &metav1.CreateOptions{})
	_, getErr := r.Get(ctx, "r", nil)
	_, listErr := r.List(ctx, &metainternalversion.ListOptions{})
	_, watchErr := r.Watch(ctx, &metainternalversion.ListOptions{})
	for name, err := range map[string]error{"create": createErr, "get": getErr, "list": listErr, "watch": watchErr} {
		var st apierrors.APIStatus
		if !errors.As(err, &st) || st.Status().Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: %v, want a 503 Status", name, err)
		}
		if msg := st.Status().Message; strings.Contains(msg, "/var/lib") || strings.Contains(msg, "10.0.0.7") || strings.Contains(msg, "input/output") {
			t.Fatalf("%s: the client is told %q", name, msg)
		}
	}
}

// takenNames is a Revoker on which the first names drawn are taken.
type takenNames struct {
	brokenStore
	taken int
	got   []string
}

func (t *takenNames) Revoke(_ context.Context, rev *store.Revocation) error {
	t.got = append(t.got, rev.Name)
	if len(t.got) <= t.taken {
		return store.ErrExists
	}
	return nil
}

// TestGeneratedNameIsDrawnAgainWhenTaken: generateName retries on a taken
// name, as kube-apiserver does; a taken given name is a 409.
func TestGeneratedNameIsDrawnAgainWhenTaken(t *testing.T) {
	rv := &takenNames{taken: 2}
	r := New(rv, testingclock.NewFakeClock(time.Now()), rand.Reader)
	in := &v1alpha1.Revocation{ObjectMeta: metav1.ObjectMeta{GenerateName: "r-"}, Spec: v1alpha1.RevocationSpec{Subject: "u"}}
	if _, err := r.Create(context.Background(), in, nil, &metav1.CreateOptions{}); err != nil || len(rv.got) != 3 {
		t.Fatalf("create = %v after %d tries; want success on the third name", err, len(rv.got))
	}
	rv = &takenNames{taken: 1}
	r = New(rv, testingclock.NewFakeClock(time.Now()), rand.Reader)
	in = &v1alpha1.Revocation{ObjectMeta: metav1.ObjectMeta{Name: "given"}, Spec: v1alpha1.RevocationSpec{Subject: "u"}}
	if _, err := r.Create(context.Background(), in, nil, &metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) || len(rv.got) != 1 {
		t.Fatalf("a taken given name: %v after %d tries; want 409 at once", err, len(rv.got))
	}
}
