package authn

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"portcullis.dev/portcullis/store"
)

// ErrBindingsNotSynced means the watch of bound objects has not listed yet.
var ErrBindingsNotSynced = errors.New("authn: bound objects not synced yet")

// ObjectBindings checks bindings against watch-driven informers' listers,
// as Kubernetes checks its own service account tokens: the token is good
// while an object of that kind, namespace and name exists with that uid and
// is not being deleted. A deletion is seen within the watch's lag; until
// every informer listed once, reviews of bound tokens are undecided (fail
// closed). A kind without a lister is refused.
type ObjectBindings struct {
	// Listers are the informers' GenericListers by kind (ServiceAccount,
	// Pod, Secret, Node): of typed objects or of PartialObjectMetadata.
	Listers map[string]cache.GenericLister
	// Synced reports whether every informer listed once.
	Synced func() bool
}

var _ Bindings = ObjectBindings{}

// Exists implements Bindings.
func (o ObjectBindings) Exists(b *store.BoundObject) (bool, error) {
	lister, ok := o.Listers[b.Kind]
	if !ok {
		return false, nil
	}
	if !o.Synced() {
		return false, ErrBindingsNotSynced
	}
	var obj any
	var err error
	if b.Namespace != "" {
		obj, err = lister.ByNamespace(b.Namespace).Get(b.Name)
	} else {
		obj, err = lister.Get(b.Name)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return false, fmt.Errorf("authn: %s lister returned %T", b.Kind, obj)
	}
	return string(m.GetUID()) == b.UID && m.GetDeletionTimestamp() == nil, nil
}
