// Package vnc is the VNC token front door: KubeVirt's token.kubevirt.io/v1
// API. GET …/namespaces/{ns}/virtualmachines/{vm}/vnc?duration=…[&singleUse=true] mints a
// console token for one VM; DELETE on the same path revokes every token of
// that VM at once.
package vnc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/issuer"
	kubevirtv1 "portcullis.dev/portcullis/issuer/apis/kubevirt/v1"
	"portcullis.dev/portcullis/issuer/names"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

// Defaults of the duration rules, as KubeVirt documents them.
const (
	DefaultDuration    = 10 * time.Minute
	DefaultMinDuration = 10 * time.Minute
	// MaxDuration is Kubernetes' limit on token lifetimes (2^32 s).
	MaxDuration = (1 << 32) * time.Second
	// DefaultAudience is the audience a VNC proxy asks reviews for.
	DefaultAudience = token.VNCAudience
)

// Minter is the minting core.
type Minter interface {
	Mint(ctx context.Context, req issuer.Request) (*issuer.Token, error)
}

// Revoker stores revocations (the cache, so this replica refuses at once).
type Revoker interface {
	Revoke(ctx context.Context, rev *store.Revocation) error
}

// Options configures the front door.
type Options struct {
	// MinDuration is the shortest token (default 10m; admins may lower it).
	MinDuration time.Duration
	// MaxDuration, when set, is the longest token; else Kubernetes' 2^32 s.
	MaxDuration time.Duration
	// APIAudiences and Audience are the tokens' audiences: the API's, so
	// the token works at kube-apiserver, and the VNC audience for proxies.
	APIAudiences []string
	Audience     string
	// Cluster, when set, is cluster-connected mode: the VM must exist and
	// tokens are bound to its <vm>-vnc-access ServiceAccount.
	Cluster Cluster
}

// REST is the virtualmachines/vnc subresource.
type REST struct {
	minter  Minter
	revoker Revoker
	opts    Options
	clock   clock.PassiveClock
	rand    io.Reader
}

var (
	_ rest.Connecter            = (*REST)(nil)
	_ rest.Scoper               = VirtualMachines{}
	_ rest.SingularNameProvider = VirtualMachines{}
)

// New returns the front door.
func New(m Minter, r Revoker, opts Options, clk clock.PassiveClock, random io.Reader) *REST {
	if opts.MinDuration <= 0 {
		opts.MinDuration = DefaultMinDuration
	}
	if opts.MaxDuration <= 0 || opts.MaxDuration > MaxDuration {
		opts.MaxDuration = MaxDuration
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	return &REST{minter: m, revoker: r, opts: opts, clock: clk, rand: random}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &kubevirtv1.TokenResponse{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NewConnectOptions implements rest.Connecter: the handler reads duration
// from the query itself, to answer a bad value in its own words.
func (r *REST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// ConnectMethods implements rest.Connecter.
func (r *REST) ConnectMethods() []string { return []string{http.MethodGet, http.MethodDelete} }

// Connect implements rest.Connecter.
func (r *REST) Connect(ctx context.Context, vm string, _ runtime.Object, _ rest.Responder) (http.Handler, error) {
	ns, _ := genericapirequest.NamespaceFrom(ctx)
	if ns == "" || vm == "" {
		return nil, errors.New("namespace and name parameters are required")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet:
			r.mint(req.Context(), w, req, ns, vm)
		case http.MethodDelete:
			r.revoke(req.Context(), w, ns, vm)
		default:
			status.Write(w, status.New(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "only GET and DELETE are allowed"))
		}
	}), nil
}

// ServiceAccountName is the identity KubeVirt gives a VM's VNC tokens.
func ServiceAccountName(vm string) string { return vm + "-vnc-access" }

// Subject is the username of a VM's VNC tokens.
func Subject(ns, vm string) string {
	return serviceaccount.MakeUsername(ns, ServiceAccountName(vm))
}

// ParseDuration applies the duration rules to the query value: Go syntax,
// default 10m, at least the minimum, at most the maximum, whole seconds.
func (r *REST) ParseDuration(value string) (time.Duration, error) {
	if value == "" {
		return DefaultDuration, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("failed to parse duration %q: %v", value, err)
	}
	if d < r.opts.MinDuration {
		return 0, fmt.Errorf("duration %q is too short: the minimum is %s", value, r.opts.MinDuration)
	}
	if d > r.opts.MaxDuration {
		return 0, fmt.Errorf("duration %q is too long: the maximum is %s", value, maxText(r.opts.MaxDuration))
	}
	return d.Truncate(time.Second), nil
}

// parseSingleUse reads the singleUse query parameter: a single-use token
// opens at most one console session, across every proxy.
func parseSingleUse(value string) (bool, error) {
	switch value {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, fmt.Errorf("singleUse %q: must be true or false", value)
}

func maxText(d time.Duration) string {
	if d == MaxDuration {
		return "2^32 seconds"
	}
	return d.String()
}

func (r *REST) mint(ctx context.Context, w http.ResponseWriter, req *http.Request, ns, vm string) {
	d, err := r.ParseDuration(req.URL.Query().Get("duration"))
	if err != nil {
		status.Write(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	singleUse, err := parseSingleUse(req.URL.Query().Get("singleUse"))
	if err != nil {
		status.Write(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	saClaim := &token.ObjectRef{Name: ServiceAccountName(vm)}
	var binding *store.BoundObject
	if r.opts.Cluster != nil {
		uid, err := r.opts.Cluster.EnsureVMAccess(ctx, ns, vm)
		switch {
		case apierrors.IsNotFound(err):
			status.Write(w, status.New(http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("VirtualMachine does not exist: %v", err)))
			return
		case err != nil:
			status.Write(w, status.Internal(ctx, "error creating the VM's ServiceAccount, Role and RoleBinding", err))
			return
		}
		saClaim.UID = uid
		// Bound to the ServiceAccount: deleting it revokes the VM's tokens.
		binding = &store.BoundObject{APIVersion: "v1", Kind: "ServiceAccount", Namespace: ns, Name: ServiceAccountName(vm), UID: uid}
	}
	auds := append(append([]string{}, r.opts.APIAudiences...), r.opts.Audience)
	tok, err := r.minter.Mint(ctx, issuer.Request{
		Kind:      store.KindVNC,
		Subject:   Subject(ns, vm),
		Groups:    serviceaccount.MakeGroupNames(ns),
		Extra:     map[string][]string{token.ExtraVMNamespace: {ns}, token.ExtraVMName: {vm}},
		Audiences: auds,
		Lifetime:  d,
		Binding:   binding,
		// Revoked per VM (a mark on its identity) or by key, never one by
		// one: no store write per token.
		Stateless:  true,
		SingleUse:  singleUse,
		Kubernetes: &token.Kubernetes{Namespace: ns, ServiceAccount: saClaim},
	})
	if err != nil {
		status.Write(w, status.MintFailed(ctx, "failed to request token", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token":               tok.Value,
		"expirationTimestamp": tok.Record.ExpiresAt.UTC().Format(time.RFC3339),
	})
}

// revoke refuses every token of the VM minted until now, with one durable
// "not before" mark on the VM's identity: no write per token.
func (r *REST) revoke(ctx context.Context, w http.ResponseWriter, ns, vm string) {
	suffix, err := names.Suffix(r.rand, 5)
	if err != nil {
		status.Write(w, status.Internal(ctx, "failed to name the revocation", err))
		return
	}
	uid, err := names.UID(r.rand)
	if err != nil {
		status.Write(w, status.Internal(ctx, "failed to name the revocation", err))
		return
	}
	rev := &store.Revocation{
		Name: "vnc-" + suffix, UID: uid, Scope: store.ScopeSubject, Target: Subject(ns, vm),
		Reason: "VNC tokens of VM " + ns + "/" + vm + " revoked", Created: r.clock.Now(),
	}
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		rev.RevokedBy = u.GetName()
	}
	if err := r.revoker.Revoke(ctx, rev); err != nil {
		status.Write(w, status.Unavailable(ctx, "the revocation could not be stored", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess, Code: http.StatusOK,
		Message: fmt.Sprintf("every VNC token of VirtualMachine %s/%s issued until now is revoked", ns, vm),
	})
}

// VirtualMachines is the parent of the vnc subresource: the generic server
// needs it to know the subresource is namespaced. It serves no verbs.
type VirtualMachines struct{}

// New implements rest.Storage.
func (VirtualMachines) New() runtime.Object { return &kubevirtv1.TokenResponse{} }

// Destroy implements rest.Storage.
func (VirtualMachines) Destroy() {}

// NamespaceScoped implements rest.Scoper.
func (VirtualMachines) NamespaceScoped() bool { return true }

// GetSingularName implements rest.SingularNameProvider.
func (VirtualMachines) GetSingularName() string { return "virtualmachine" }
