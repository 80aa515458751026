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
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"

	"portcullis.dev/portcullis/issuer"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
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
	// Cluster, when set, is cluster-connected mode: the ServiceAccount and
	// the bound object must exist, and their uids are recorded so that a
	// review refuses the token once either is gone. Standalone there is
	// nothing to check, so bound tokens are refused.
	Cluster Cluster
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
	if max := int64(r.opts.MaxExpiration / time.Second); max > 0 && *out.Spec.ExpirationSeconds > max {
		warning.AddWarning(ctx, "", fmt.Sprintf("requested expiration of %d seconds shortened to %d seconds", *out.Spec.ExpirationSeconds, max))
		*out.Spec.ExpirationSeconds = max
	}
	b, err := r.bind(ctx, ns, name, out.Spec.BoundObjectRef)
	if err != nil {
		return nil, err
	}

	subject := serviceaccount.MakeUsername(ns, name)
	tok, err := r.minter.Mint(ctx, issuer.Request{
		Kind:           store.KindServiceAccount,
		Subject:        subject,
		UID:            b.saUID,
		Groups:         serviceaccount.MakeGroupNames(ns),
		Extra:          b.extra,
		Audiences:      out.Spec.Audiences,
		Lifetime:       time.Duration(*out.Spec.ExpirationSeconds) * time.Second,
		Binding:        b.object,
		ServiceAccount: b.serviceAccount,
		Kubernetes:     b.claim,
		DryRun:         slices.Contains(options.DryRun, metav1.DryRunAll),
	})
	if err != nil {
		return nil, status.MintFailed(ctx, "failed to generate token", err)
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

// binding is what a TokenRequest is bound to, as read from the cluster.
type binding struct {
	saUID          string
	serviceAccount *store.BoundObject
	object         *store.BoundObject
	extra          map[string][]string
	claim          *token.Kubernetes
}

// bind checks what the request binds the token to, as kube-apiserver does:
// cluster-connected, the ServiceAccount must exist (404) and so must the
// bound Pod, Secret or Node, with the uid given (409) or its uid filled in;
// a Pod must run as the ServiceAccount. The extras and the kubernetes.io
// claim come from the objects read, never from the request. Standalone
// nothing can be checked: a boundObjectRef is refused (422), and the
// ServiceAccount is not looked up.
func (r *REST) bind(ctx context.Context, ns, name string, ref *authenticationv1.BoundObjectReference) (*binding, error) {
	sa := &token.ObjectRef{Name: name}
	b := &binding{extra: map[string][]string{}, claim: &token.Kubernetes{Namespace: ns, ServiceAccount: sa}}
	if ref != nil {
		// The kinds Kubernetes binds tokens to, checked first in either mode.
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || gv.Group != "" || !slices.Contains([]string{"Pod", "Secret", "Node"}, ref.Kind) {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind).String()))
		}
	}
	if r.opts.Cluster == nil {
		if ref != nil {
			return nil, apierrors.NewInvalid(tokenRequestKind, "", field.ErrorList{field.Forbidden(field.NewPath("spec", "boundObjectRef"),
				"bound tokens need cluster-connected mode (--kubeconfig or --in-cluster): standalone, Portcullis cannot check that the object exists")})
		}
		return b, nil
	}
	account, err := r.opts.Cluster.ServiceAccount(ctx, ns, name)
	if err != nil {
		return nil, lookupError(ctx, err)
	}
	b.saUID, sa.UID = string(account.UID), string(account.UID)
	b.serviceAccount = &store.BoundObject{APIVersion: "v1", Kind: "ServiceAccount", Namespace: ns, Name: name, UID: string(account.UID)}
	if ref == nil {
		return b, nil
	}
	var uid types.UID
	obj := &store.BoundObject{APIVersion: ref.APIVersion, Kind: ref.Kind, Name: ref.Name}
	switch ref.Kind {
	case "Pod":
		pod, err := r.opts.Cluster.Pod(ctx, ns, ref.Name)
		if err != nil {
			return nil, lookupError(ctx, err)
		}
		if pod.Spec.ServiceAccountName != name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", name))
		}
		uid, obj.Namespace = pod.UID, ns
		b.extra[ExtraPodName] = []string{pod.Name}
		b.extra[ExtraPodUID] = []string{string(pod.UID)}
		b.claim.Pod = &token.ObjectRef{Name: pod.Name, UID: string(pod.UID)}
		if pod.Spec.NodeName != "" {
			b.extra[ExtraNodeName] = []string{pod.Spec.NodeName}
			if node, err := r.opts.Cluster.Node(ctx, pod.Spec.NodeName); err == nil {
				b.extra[ExtraNodeUID] = []string{string(node.UID)}
				b.claim.Node = &token.ObjectRef{Name: node.Name, UID: string(node.UID)}
			}
		}
	case "Secret":
		secret, err := r.opts.Cluster.Secret(ctx, ns, ref.Name)
		if err != nil {
			return nil, lookupError(ctx, err)
		}
		uid, obj.Namespace = secret.UID, ns
		b.claim.Secret = &token.ObjectRef{Name: secret.Name, UID: string(secret.UID)}
	case "Node":
		node, err := r.opts.Cluster.Node(ctx, ref.Name)
		if err != nil {
			return nil, lookupError(ctx, err)
		}
		uid = node.UID
		b.extra[ExtraNodeName] = []string{node.Name}
		b.extra[ExtraNodeUID] = []string{string(node.UID)}
		b.claim.Node = &token.ObjectRef{Name: node.Name, UID: string(node.UID)}
	}
	if ref.UID != "" && ref.UID != uid {
		return nil, apierrors.NewConflict(schema.GroupResource{Resource: ref.Kind}, ref.Name,
			fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
	}
	obj.UID = string(uid)
	b.object = obj
	return b, nil
}

// lookupError passes a NotFound through (it names the missing object, as
// kube-apiserver's answer does) and hides any other failure.
func lookupError(ctx context.Context, err error) error {
	if apierrors.IsNotFound(err) {
		return err
	}
	return status.Internal(ctx, "failed to read the objects the token is bound to", err)
}

// The extras a bound token's identity carries, as kube-apiserver sets them.
const (
	ExtraPodName  = "authentication.kubernetes.io/pod-name"
	ExtraPodUID   = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName = "authentication.kubernetes.io/node-name"
	ExtraNodeUID  = "authentication.kubernetes.io/node-uid"
)

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
