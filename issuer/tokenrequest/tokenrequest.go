// Package tokenrequest is the TokenRequest front door:
// POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token, answered as
// kube-apiserver answers it, minted by the issuer core.
package tokenrequest

import (
	"context"
	"fmt"
	"slices"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/audit"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
)

// The limits Kubernetes puts on expirationSeconds.
const (
	MinExpirationSeconds     = 10 * 60
	MaxExpirationSeconds     = 1 << 32
	DefaultExpirationSeconds = 60 * 60
)

// IssuedCredentialIDAnnotation is the audit annotation naming the minted token.
const IssuedCredentialIDAnnotation = "authentication.kubernetes.io/issued-credential-id"

var tokenRequestKind = schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}

// Minter is the minting core.
type Minter interface {
	Mint(ctx context.Context, req issuer.Request) (*issuer.Token, error)
}

// Options configures the front door.
type Options struct {
	// APIAudiences are used when a request names none.
	APIAudiences []string
	// MaxExpiration, when set, caps (does not reject) longer requests, as
	// --service-account-max-token-expiration does.
	MaxExpiration time.Duration
}

// REST is the serviceaccounts/token subresource.
type REST struct {
	minter Minter
	opts   Options
}

var (
	_ rest.NamedCreater             = (*REST)(nil)
	_ rest.GroupVersionKindProvider = (*REST)(nil)
	_ rest.SingularNameProvider     = (*REST)(nil)
	_ rest.Scoper                   = ServiceAccounts{}
	_ rest.SingularNameProvider     = ServiceAccounts{}
)

// New returns the front door.
func New(minter Minter, opts Options) *REST {
	return &REST{minter: minter, opts: opts}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &authenticationv1.TokenRequest{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "token" }

// GroupVersionKind implements rest.GroupVersionKindProvider: the subresource
// takes and returns authentication.k8s.io/v1 TokenRequest.
func (r *REST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
}

// Create implements rest.NamedCreater, in the order kube-apiserver checks.
func (r *REST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	ns, ok := genericapirequest.NamespaceFrom(ctx)
	if !ok || ns == "" {
		return nil, apierrors.NewBadRequest("namespace is required")
	}
	req, ok := obj.(*authenticationv1.TokenRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a TokenRequest: %T", obj))
	}
	var errs field.ErrorList
	if req.Name != "" && req.Name != name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), req.Name, "must match the service account name if specified"))
	}
	if req.Namespace != "" && req.Namespace != ns {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace, "must match the service account namespace if specified"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(tokenRequestKind, "", errs)
	}

	out := req.DeepCopy()
	out.Name, out.Namespace = name, ns
	out.Status = authenticationv1.TokenRequestStatus{}
	if len(out.Spec.Audiences) == 0 {
		out.Spec.Audiences = slices.Clone(r.opts.APIAudiences)
	}
	if out.Spec.ExpirationSeconds == nil {
		d := int64(DefaultExpirationSeconds)
		out.Spec.ExpirationSeconds = &d
	}
	if errs := validateSpec(&out.Spec); len(errs) > 0 {
		return nil, apierrors.NewInvalid(tokenRequestKind, "", errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, out); err != nil {
			return nil, err
		}
	}
	binding, bindClaim, err := boundObject(out.Spec.BoundObjectRef)
	if err != nil {
		return nil, err
	}
	if max := int64(r.opts.MaxExpiration / time.Second); max > 0 && *out.Spec.ExpirationSeconds > max {
		warning.AddWarning(ctx, "", fmt.Sprintf("requested expiration of %d seconds shortened to %d seconds", *out.Spec.ExpirationSeconds, max))
		*out.Spec.ExpirationSeconds = max
	}

	subject := "system:serviceaccount:" + ns + ":" + name
	kube := map[string]any{
		"namespace":      ns,
		"serviceaccount": map[string]string{"name": name},
	}
	extra := map[string][]string{}
	if binding != nil {
		kube[bindClaim] = map[string]string{"name": binding.Name, "uid": binding.UID}
		if binding.Kind == "Pod" && binding.Name != "" && binding.UID != "" {
			extra["authentication.kubernetes.io/pod-name"] = []string{binding.Name}
			extra["authentication.kubernetes.io/pod-uid"] = []string{binding.UID}
		}
	}
	tok, err := r.minter.Mint(ctx, issuer.Request{
		Kind:      store.KindServiceAccount,
		Subject:   subject,
		Groups:    []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
		Extra:     extra,
		Audiences: out.Spec.Audiences,
		Lifetime:  time.Duration(*out.Spec.ExpirationSeconds) * time.Second,
		Binding:   binding,
		Claims:    map[string]any{"kubernetes.io": kube},
		DryRun:    slices.Contains(options.DryRun, metav1.DryRunAll),
	})
	if err != nil {
		return nil, status.Internal(ctx, "failed to generate token", err)
	}
	out.CreationTimestamp = metav1.NewTime(tok.Record.IssuedAt)
	out.Status = authenticationv1.TokenRequestStatus{
		Token:               tok.Value,
		ExpirationTimestamp: metav1.NewTime(tok.Record.ExpiresAt),
	}
	if tok.Value != "" {
		audit.AddAuditAnnotation(ctx, IssuedCredentialIDAnnotation, "JTI="+tok.Record.JTI)
	}
	return out, nil
}

// validateSpec is Kubernetes' static TokenRequest validation.
func validateSpec(spec *authenticationv1.TokenRequestSpec) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("spec", "expirationSeconds")
	switch exp := *spec.ExpirationSeconds; {
	case exp < MinExpirationSeconds:
		errs = append(errs, field.Invalid(path, exp, "may not specify a duration less than 10 minutes"))
	case exp > MaxExpirationSeconds:
		errs = append(errs, field.Invalid(path, exp, "may not specify a duration larger than 2^32 seconds"))
	}
	return errs
}

// boundObject accepts the kinds Kubernetes binds tokens to (core v1 Pod,
// Secret and Node) and records the reference. Checking that the object
// exists needs the cluster and is done in cluster-connected mode.
func boundObject(ref *authenticationv1.BoundObjectReference) (*store.BoundObject, string, error) {
	if ref == nil {
		return nil, "", nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", ref.APIVersion))
	}
	gvk := gv.WithKind(ref.Kind)
	claim := map[string]string{"Pod": "pod", "Secret": "secret", "Node": "node"}[ref.Kind]
	if gv.Group != "" || claim == "" {
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gvk.String()))
	}
	return &store.BoundObject{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name, UID: string(ref.UID)}, claim, nil
}

// ServiceAccounts is the parent of the token subresource. The generic server
// needs a parent to know that the subresource is namespaced; it serves no
// verbs of its own (Portcullis holds no ServiceAccounts).
type ServiceAccounts struct{}

// New implements rest.Storage.
func (ServiceAccounts) New() runtime.Object { return &corev1.ServiceAccount{} }

// Destroy implements rest.Storage.
func (ServiceAccounts) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (ServiceAccounts) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider.
func (ServiceAccounts) GetSingularName() string { return "serviceaccount" }
