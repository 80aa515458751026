package authn

import (
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"portcullis.dev/portcullis/store"
)

// ErrBindingsNotSynced means the watch of bound objects has not listed yet.
var ErrBindingsNotSynced = errors.New("authn: bound objects not synced yet")

// ServiceAccountBindings checks ServiceAccount bindings against an
// informer's lister: the token is good while a ServiceAccount of that name
// exists with that uid, as Kubernetes checks its own service account
// tokens. The informer is watch-driven, so a deletion is seen within the
// watch's lag. Bindings of other kinds are not checked here.
type ServiceAccountBindings struct {
	Lister corev1listers.ServiceAccountLister
	Synced func() bool
}

var _ Bindings = ServiceAccountBindings{}

// Exists implements Bindings.
func (s ServiceAccountBindings) Exists(b *store.BoundObject) (bool, error) {
	if b.Kind != "ServiceAccount" {
		return true, nil
	}
	if !s.Synced() {
		return false, ErrBindingsNotSynced
	}
	sa, err := s.Lister.ServiceAccounts(b.Namespace).Get(b.Name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(sa.UID) == b.UID && sa.DeletionTimestamp == nil, nil
}
