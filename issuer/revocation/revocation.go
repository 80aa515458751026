// Package revocation serves portcullis.dev/v1alpha1 Revocations: the API
// through which admins revoke one token by jti or every token of a subject.
package revocation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/fanout"
	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/issuer/names"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
)

var resource = v1alpha1.SchemeGroupVersion.WithResource("revocations").GroupResource()

// generateNameTries is how many names are drawn for a generateName before
// giving up with a 409, as kube-apiserver retries.
const generateNameTries = 7

// Revoker is where revocations go and come from: the cache, which writes
// through to the store and updates its exact index before answering.
type Revoker interface {
	Revoke(ctx context.Context, rev *store.Revocation) error
	Revocation(ctx context.Context, name string) (*store.Revocation, error)
	Revocations(ctx context.Context) ([]*store.Revocation, error)
	// Watch sends every revocation the replica learns of; the
	// watcher is closed if it falls behind.
	Watch() (*fanout.Watcher[*store.Revocation], error)
}

// REST is the revocations resource.
type REST struct {
	revoker Revoker
	clock   clock.PassiveClock
	rand    io.Reader
}

var (
	_ rest.Creater              = (*REST)(nil)
	_ rest.Getter               = (*REST)(nil)
	_ rest.Lister               = (*REST)(nil)
	_ rest.Watcher              = (*REST)(nil)
	_ rest.Scoper               = (*REST)(nil)
	_ rest.SingularNameProvider = (*REST)(nil)
)

// New returns the resource. clk and random are the injected time and
// randomness (for uids and generated names).
func New(r Revoker, clk clock.PassiveClock, random io.Reader) *REST {
	return &REST{revoker: r, clock: clk, rand: random}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.Revocation{} }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &v1alpha1.RevocationList{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper: revocations are cluster-scoped.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "revocation" }

// Create implements rest.Creater.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.Revocation)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a Revocation: %T", obj))
	}
	if errs := validate(in); len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("Revocation").GroupKind(), in.Name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	uid, err := names.UID(r.rand)
	if err != nil {
		return nil, status.Internal(ctx, "failed to name the revocation", err)
	}
	rev := &store.Revocation{Name: in.Name, UID: uid, Reason: in.Spec.Reason, Created: r.clock.Now()}
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		rev.RevokedBy = u.GetName()
	}
	if in.Spec.JTI != "" {
		rev.Scope, rev.Target = store.ScopeJTI, in.Spec.JTI
	} else {
		rev.Scope, rev.Target = store.ScopeSubject, in.Spec.Subject
	}
	// A generated name that is taken is drawn again, as kube-apiserver
	// retries generateName (a given name that is taken is a 409).
	tries := 1
	if in.Name == "" {
		tries = generateNameTries
	}
	for try := 1; ; try++ {
		if in.Name == "" {
			suffix, err := names.Suffix(r.rand, 5)
			if err != nil {
				return nil, status.Internal(ctx, "failed to name the revocation", err)
			}
			rev.Name = in.GenerateName + suffix
		}
		if slices.Contains(options.DryRun, metav1.DryRunAll) {
			return toAPI(rev), nil
		}
		err := r.revoker.Revoke(ctx, rev)
		switch {
		case errors.Is(err, store.ErrExists) && try < tries:
			continue
		case errors.Is(err, store.ErrExists):
			return nil, apierrors.NewAlreadyExists(resource, rev.Name)
		case errors.Is(err, store.ErrNotFound):
			return nil, apierrors.NewInvalid(v1alpha1.SchemeGroupVersion.WithKind("Revocation").GroupKind(), rev.Name,
				field.ErrorList{field.NotFound(field.NewPath("spec", "jti"), in.Spec.JTI)})
		case err != nil:
			return nil, status.Unavailable(ctx, "the revocation could not be stored", err)
		}
		break
	}
	return toAPI(rev), nil
}

func validate(in *v1alpha1.Revocation) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	switch {
	case in.Spec.JTI == "" && in.Spec.Subject == "":
		errs = append(errs, field.Required(spec, "one of spec.jti and spec.subject is required"))
	case in.Spec.JTI != "" && in.Spec.Subject != "":
		errs = append(errs, field.Forbidden(spec.Child("subject"), "only one of spec.jti and spec.subject may be set"))
	}
	if in.Name == "" && in.GenerateName == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "name or generateName is required"))
	}
	return errs
}

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	rev, err := r.revoker.Revocation(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apierrors.NewNotFound(resource, name)
	}
	if err != nil {
		return nil, status.Unavailable(ctx, "failed to read revocation "+name, err)
	}
	return toAPI(rev), nil
}

// List implements rest.Lister. Revocations carry no labels, so only an
// empty label selector is accepted.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	if options != nil && options.LabelSelector != nil && !options.LabelSelector.Empty() {
		return nil, apierrors.NewBadRequest("revocations have no labels: label selectors are not supported")
	}
	revs, err := r.revoker.Revocations(ctx)
	if err != nil {
		return nil, status.Unavailable(ctx, "failed to list revocations", err)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].Name < revs[j].Name })
	list := &v1alpha1.RevocationList{}
	for _, rev := range revs {
		if options != nil && options.FieldSelector != nil && !options.FieldSelector.Empty() &&
			!options.FieldSelector.Matches(fieldSet{"metadata.name": rev.Name}) {
			continue
		}
		list.Items = append(list.Items, *toAPI(rev))
	}
	return list, nil
}

// Watch implements rest.Watcher: it starts with every stored revocation,
// whatever resourceVersion is asked (revocations keep no versions, and a
// watcher that reconnects must not miss one made meanwhile; seeing one twice
// is harmless), then sends each new one made through this replica.
// Revocations are never changed, so ADDED is the only event.
func (r *REST) Watch(ctx context.Context, _ *metainternalversion.ListOptions) (watch.Interface, error) {
	w, err := r.revoker.Watch()
	if err != nil {
		return nil, err
	}
	var initial []watch.Event
	{
		revs, err := r.revoker.Revocations(ctx)
		if err != nil {
			w.Stop()
			return nil, status.Unavailable(ctx, "failed to list revocations", err)
		}
		for _, rev := range revs {
			initial = append(initial, watch.Event{Type: watch.Added, Object: toAPI(rev)})
		}
	}
	out := make(chan watch.Event, len(initial)+16)
	for _, e := range initial {
		out <- e
	}
	return watch.NewProxyWatcher(forward(ctx, w, out)), nil
}

// forward turns the replica's revocations into Revocation objects on out.
// When the replica closes a watcher that fell behind, out is closed too,
// and the client lists again.
func forward(ctx context.Context, in *fanout.Watcher[*store.Revocation], out chan watch.Event) chan watch.Event {
	go func() {
		defer close(out)
		defer in.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case rev, ok := <-in.C():
				if !ok {
					return
				}
				select {
				case out <- watch.Event{Type: watch.Added, Object: toAPI(rev)}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// fieldSet is the fields a revocation can be selected by.
type fieldSet map[string]string

func (f fieldSet) Has(field string) bool   { _, ok := f[field]; return ok }
func (f fieldSet) Get(field string) string { return f[field] }

// ConvertToTable implements rest.TableConvertor for kubectl get.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name of the revocation"},
		{Name: "Scope", Type: "string", Description: "jti or subject"},
		{Name: "Target", Type: "string", Description: "The revoked token id or subject"},
		{Name: "Revoked By", Type: "string", Description: "Who revoked"},
		{Name: "Age", Type: "date", Description: "When it took effect"},
	}}
	var items []v1alpha1.Revocation
	switch o := obj.(type) {
	case *v1alpha1.Revocation:
		items = []v1alpha1.Revocation{*o}
	case *v1alpha1.RevocationList:
		items = o.Items
	default:
		return nil, fmt.Errorf("revocation: cannot make a table of %T", obj)
	}
	now := r.clock.Now()
	for i := range items {
		it := &items[i]
		scope, target := "subject", it.Spec.Subject
		if it.Spec.JTI != "" {
			scope, target = "jti", it.Spec.JTI
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{it.Name, scope, target, it.Status.RevokedBy, shortAge(now.Sub(it.CreationTimestamp.Time))},
			Object: runtime.RawExtension{Object: it},
		})
	}
	return table, nil
}

func toAPI(rev *store.Revocation) *v1alpha1.Revocation {
	out := &v1alpha1.Revocation{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Revocation"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              rev.Name,
			UID:               types.UID(rev.UID),
			CreationTimestamp: metav1.NewTime(rev.Created),
		},
		Spec:   v1alpha1.RevocationSpec{Reason: rev.Reason},
		Status: v1alpha1.RevocationStatus{RevokedBy: rev.RevokedBy},
	}
	if rev.Scope == store.ScopeJTI {
		out.Spec.JTI = rev.Target
	} else {
		out.Spec.Subject = rev.Target
		at := metav1.NewMicroTime(rev.Created)
		out.Status.EffectiveAt = &at
	}
	if rev.ExpiresAt != nil {
		t := metav1.NewTime(*rev.ExpiresAt)
		out.Status.ExpiresAt = &t
	}
	return out
}
