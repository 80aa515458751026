// Package claims serves portcullis.dev/v1alpha1 TokenClaims: a VNC proxy
// uses up a single-use token by claiming it before its console session
// opens; only the first claim of a token succeeds, at any replica.
package claims

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/authn"
	v1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

var (
	resource = v1alpha1.SchemeGroupVersion.WithResource("tokenclaims").GroupResource()
	kind     = v1alpha1.SchemeGroupVersion.WithKind("TokenClaim").GroupKind()
)

// Reviewer decides a token for audiences, as the webhook does.
type Reviewer interface {
	Review(ctx context.Context, token string, audiences []string) (authn.Result, error)
}

// Records records a claim: creating a token's record fails with
// store.ErrExists when one exists, in every backend and replica.
type Records interface {
	CreateRecord(ctx context.Context, r *store.Record, opts store.CreateOptions) error
}

// REST is the tokenclaims resource: create only.
type REST struct {
	reviewer Reviewer
	records  Records
	audience string
	clock    clock.PassiveClock
}

var (
	_ rest.Creater              = (*REST)(nil)
	_ rest.Scoper               = (*REST)(nil)
	_ rest.SingularNameProvider = (*REST)(nil)
)

// New returns the resource; audience is the VNC audience (the default of
// spec.audience).
func New(reviewer Reviewer, records Records, audience string, clk clock.PassiveClock) *REST {
	return &REST{reviewer: reviewer, records: records, audience: audience, clock: clk}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &v1alpha1.TokenClaim{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() {}

// NamespaceScoped implements rest.Scoper: claims are cluster-scoped.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "tokenclaim" }

// Create implements rest.Creater: it reviews the token, and records its jti
// unless a claim of it is recorded already (409).
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*v1alpha1.TokenClaim)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a TokenClaim: %T", obj))
	}
	tokenPath := field.NewPath("spec", "token")
	if in.Spec.Token == "" {
		return nil, apierrors.NewInvalid(kind, "", field.ErrorList{field.Required(tokenPath, "the single-use token to claim")})
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	audience := in.Spec.Audience
	if audience == "" {
		audience = r.audience
	}
	res, err := r.reviewer.Review(ctx, in.Spec.Token, []string{audience})
	if err != nil {
		return nil, status.Unavailable(ctx, "the token could not be checked", err)
	}
	// The reasons a token is refused are the reviewer's debug log's, as
	// for reviews: the caller learns only that it is not good.
	notGood := apierrors.NewInvalid(kind, "", field.ErrorList{field.Invalid(tokenPath, "(not shown)", "not a good single-use token for audience "+audience)})
	if !res.Authenticated() {
		return nil, notGood
	}
	c, err := token.DecodeCompact(in.Spec.Token)
	if err != nil || !c.Private.SingleUse || c.Private.Kind != token.KindVNC || c.Expiry == nil {
		return nil, notGood
	}
	issued := token.Time(c.IssuedAt)
	rec := &store.Record{JTI: c.ID, Kind: store.KindVNC, Subject: c.Subject, Audiences: c.Audience,
		KeyID: keyID(in.Spec.Token), IssuedAt: issued, ExpiresAt: token.Time(c.Expiry)}
	if !slices.Contains(options.DryRun, metav1.DryRunAll) {
		switch err := r.records.CreateRecord(ctx, rec, store.CreateOptions{}); {
		case errors.Is(err, store.ErrExists):
			return nil, apierrors.NewAlreadyExists(resource, c.ID)
		case err != nil:
			return nil, status.Unavailable(ctx, "the claim could not be stored", err)
		}
	}
	expires := metav1.NewTime(rec.ExpiresAt)
	return &v1alpha1.TokenClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.ID, CreationTimestamp: metav1.NewTime(r.clock.Now())},
		Spec:       v1alpha1.TokenClaimSpec{Audience: audience},
		Status:     v1alpha1.TokenClaimStatus{JTI: c.ID, ExpiresAt: &expires},
	}, nil
}

// keyID is the kid of a verified token (its record is indexed by it).
func keyID(compact string) string {
	head, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &h)
	return h.Kid
}
