// Package signingkeys serves portcullis.dev/v1alpha1 SigningKeys: the key
// ring as an API, so that admins rotate, retire and prune keys with
// `portcullis keys` or kubectl.
package signingkeys

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/utils/clock"

	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/keys"
	"portcullis.dev/portcullis/store"
)

var (
	resource = v1alpha1.SchemeGroupVersion.WithResource("signingkeys").GroupResource()
	kind     = v1alpha1.SchemeGroupVersion.WithKind("SigningKey").GroupKind()
)

// Records tells whether tokens of a key still live.
type Records interface {
	ListRecords(ctx context.Context, opts store.ListOptions) (*store.RecordList, error)
}

// REST is the signingkeys resource.
type REST struct {
	manager *keys.Manager
	records Records
	clock   clock.PassiveClock
}

var (
	_ rest.Creater              = (*REST)(nil)
	_ rest.Getter               = (*REST)(nil)
	_ rest.Lister               = (*REST)(nil)
	_ rest.Updater              = (*REST)(nil)
	_ rest.GracefulDeleter      = (*REST)(nil)
	_ rest.Scoper               = (*REST)(nil)
	_ rest.SingularNameProvider = (*REST)(nil)
)

// New returns the resource.
func New(m *keys.Manager, records Records, clk clock.PassiveClock) *REST {
	return &REST{manager: m, records: records, clock: clk}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.SigningKey{} }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.SigningKeyList{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "signingkey" }

// Create implements rest.Creater: it rotates. The new key's name is its kid.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.SigningKey)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a SigningKey: %T", obj))
	}
	var alg = keys.DefaultAlgorithm
	if in.Spec.Algorithm != "" {
		a, err := keys.ParseAlgorithm(in.Spec.Algorithm)
		if err != nil {
			return nil, apierrors.NewInvalid(kind, "", field.ErrorList{field.NotSupported(field.NewPath("spec", "algorithm"), in.Spec.Algorithm, []string{"ES256", "EdDSA", "RS256"})})
		}
		alg = a
	}
	if in.Spec.Retired {
		return nil, apierrors.NewInvalid(kind, "", field.ErrorList{field.Forbidden(field.NewPath("spec", "retired"), "a new key cannot be retired")})
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	if len(options.DryRun) > 0 {
		return nil, apierrors.NewBadRequest("dryRun is not supported: a rotation cannot be previewed")
	}
	k, err := r.manager.Rotate(ctx, alg, in.Spec.Immediate)
	switch {
	case errors.Is(err, keys.ErrRotationPending):
		return nil, apierrors.NewConflict(resource, "", errors.New("a rotation is already pending: wait for the next key to be promoted"))
	case err != nil:
		return nil, keyError(ctx, "failed to rotate the signing key", err)
	}
	return r.toAPI(k), nil
}

// Get implements rest.Getter. A key this replica does not know yet may
// have been added through another one a moment ago: the stored ring is read
// before the answer is 404.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if k := r.find(name); k != nil {
		return r.toAPI(k), nil
	}
	if err := r.manager.Refresh(ctx); err != nil && !errors.Is(err, keys.ErrSealed) {
		return nil, keyError(ctx, "failed to read the signing keys", err)
	}
	if k := r.find(name); k != nil {
		return r.toAPI(k), nil
	}
	return nil, apierrors.NewNotFound(resource, name)
}

func (r *REST) find(kid string) *keys.Key {
	for _, k := range r.manager.Ring().Keys() {
		if k.ID == kid {
			return k
		}
	}
	return nil
}

// List implements rest.Lister.
func (r *REST) List(context.Context, *metainternalversion.ListOptions) (runtime.Object, error) {
	out := &v1alpha1.SigningKeyList{}
	for _, k := range r.manager.Ring().Keys() {
		out.Items = append(out.Items, *r.toAPI(k))
	}
	return out, nil
}

// Update implements rest.Updater: only spec.retired may change, from false
// to true.
func (r *REST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	oldObj, err := r.Get(ctx, name, nil)
	if err != nil {
		return nil, false, err
	}
	old := oldObj.(*v1alpha1.SigningKey)
	obj, err := objInfo.UpdatedObject(ctx, old)
	if err != nil {
		return nil, false, err
	}
	in, ok := obj.(*v1alpha1.SigningKey)
	if !ok {
		return nil, false, apierrors.NewBadRequest(fmt.Sprintf("not a SigningKey: %T", obj))
	}
	var errs field.ErrorList
	if in.Spec.Algorithm != old.Spec.Algorithm {
		errs = append(errs, field.Invalid(field.NewPath("spec", "algorithm"), in.Spec.Algorithm, "field is immutable"))
	}
	if old.Spec.Retired && !in.Spec.Retired {
		errs = append(errs, field.Invalid(field.NewPath("spec", "retired"), false, "a retired key cannot be brought back"))
	}
	if len(errs) > 0 {
		return nil, false, apierrors.NewInvalid(kind, name, errs)
	}
	if updateValidation != nil {
		if err := updateValidation(ctx, in, old); err != nil {
			return nil, false, err
		}
	}
	if !in.Spec.Retired || old.Spec.Retired || len(options.DryRun) > 0 {
		return old, false, nil
	}
	res, err := r.manager.Retire(ctx, name)
	if err != nil {
		return nil, false, keyError(ctx, "failed to retire signing key "+name, err)
	}
	switch {
	case res.Promoted != nil:
		warning.AddWarning(ctx, "", fmt.Sprintf("%s was the active key: %s signs from now on", name, res.Promoted.ID))
	case res.Unreplaced != nil:
		warning.AddWarning(ctx, "", fmt.Sprintf("%s was the active key and no key could replace it (the key-encryption provider does not answer): minting fails until `portcullis keys rotate --now` succeeds", name))
	}
	return r.toAPI(res.Retired), false, nil
}

// Delete implements rest.GracefulDeleter: it prunes a verifying or retired
// key none of whose tokens can still be valid; otherwise 409 Conflict.
func (r *REST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	obj, err := r.Get(ctx, name, nil)
	if err != nil {
		return nil, false, err
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	if options != nil && len(options.DryRun) > 0 {
		return nil, false, apierrors.NewBadRequest("dryRun is not supported for signing keys")
	}
	switch err := r.manager.Prune(ctx, name, r.liveTokens); {
	case errors.Is(err, keys.ErrKeyInUse):
		return nil, false, apierrors.NewConflict(resource, name, err)
	case errors.Is(err, keys.ErrUnknownKey):
		return nil, false, apierrors.NewNotFound(resource, name)
	case err != nil:
		return nil, false, keyError(ctx, "failed to prune signing key "+name, err)
	}
	return obj, true, nil
}

// keyError answers a failed ring change: 503 when the key-encryption
// provider or the store did not answer (both worth a retry), saying which.
func keyError(ctx context.Context, what string, err error) error {
	if errors.Is(err, keys.ErrSealed) {
		return status.KeyEncryptionUnavailable(ctx, what, err)
	}
	return status.Unavailable(ctx, what, err)
}

// liveTokens reports whether the store holds an unexpired record signed
// by kid. It reads the key's own index range, a page at a time, and stops
// at the first live record.
func (r *REST) liveTokens(ctx context.Context, kid string) (bool, error) {
	opts := store.ListOptions{KeyID: kid, Limit: 500}
	now := r.clock.Now()
	for {
		list, err := r.records.ListRecords(ctx, opts)
		if err != nil {
			return false, err
		}
		for _, rec := range list.Items {
			if now.Before(rec.ExpiresAt) {
				return true, nil
			}
		}
		if list.Continue == "" {
			return false, nil
		}
		opts.Continue = list.Continue
	}
}

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Key id (RFC 7638 thumbprint)"},
		{Name: "Algorithm", Type: "string"},
		{Name: "State", Type: "string", Description: "next, active, verifying or retired"},
		{Name: "Age", Type: "string"},
	}}
	var items []v1alpha1.SigningKey
	switch o := obj.(type) {
	case *v1alpha1.SigningKey:
		items = []v1alpha1.SigningKey{*o}
	case *v1alpha1.SigningKeyList:
		items = o.Items
	default:
		return nil, fmt.Errorf("signingkeys: cannot make a table of %T", obj)
	}
	for i := range items {
		k := &items[i]
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{k.Name, k.Spec.Algorithm, k.Status.State, duration.HumanDuration(r.clock.Now().Sub(k.CreationTimestamp.Time))},
			Object: runtime.RawExtension{Object: k},
		})
	}
	return table, nil
}

// uidOf is a key's stable uid, derived from its kid: the generic server
// treats an object without a uid as one that does not exist.
func uidOf(kid string) types.UID {
	sum := sha256.Sum256([]byte("portcullis.dev/signingkey/" + kid))
	return types.UID(fmt.Sprintf("%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16]))
}

func (r *REST) toAPI(k *keys.Key) *v1alpha1.SigningKey {
	out := &v1alpha1.SigningKey{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "SigningKey"},
		ObjectMeta: metav1.ObjectMeta{Name: k.ID, UID: uidOf(k.ID), CreationTimestamp: metav1.NewTime(k.Created)},
		Spec:       v1alpha1.SigningKeySpec{Algorithm: k.Algorithm.String(), Retired: k.State == keys.StateRetired},
		Status:     v1alpha1.SigningKeyStatus{State: string(k.State)},
	}
	for _, t := range []struct {
		at  time.Time
		dst **metav1.Time
	}{{k.PromoteAt, &out.Status.PromoteAt}, {k.DemotedAt, &out.Status.DemotedAt}, {k.RetiredAt, &out.Status.RetiredAt}} {
		if !t.at.IsZero() {
			mt := metav1.NewTime(t.at)
			*t.dst = &mt
		}
	}
	return out
}
