// Package tokens is the user Token front door: ext.cattle.io/v1 tokens, as
// Rancher documents them. A user creates, lists, edits and deletes their own
// API tokens; admins see and manage everyone's.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/clock"

	"portcullis.dev/portcullis/internal/fanout"
	"portcullis.dev/portcullis/issuer"
	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	"portcullis.dev/portcullis/issuer/names"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
)

var (
	resource  = extv1.SchemeGroupVersion.WithResource("tokens").GroupResource()
	tokenKind = extv1.SchemeGroupVersion.WithKind("Token").GroupKind()
)

// DefaultMaxTTL is the longest and the default lifetime, as Rancher's
// auth-token-max-ttl-minutes (90 days).
const DefaultMaxTTL = 90 * 24 * time.Hour

// DefaultMaxPerUser is how many tokens one user may hold by default.
const DefaultMaxPerUser = 1000

// MaxDescriptionLength bounds spec.description, in characters: a
// description labels a token, it is not a place to store data.
const MaxDescriptionLength = 1024

// Minter is the minting core.
type Minter interface {
	Mint(ctx context.Context, req issuer.Request) (*issuer.Token, error)
}

// Records is where token records are read and changed: the cache, so that a
// change stops the token on this replica at once.
type Records interface {
	GetRecordByName(ctx context.Context, name string) (*store.Record, error)
	ListRecords(ctx context.Context, opts store.ListOptions) (*store.RecordList, error)
	UpdateRecord(ctx context.Context, jti string, update func(*store.Record) error) (*store.Record, error)
	DeleteRecord(ctx context.Context, jti string) error
}

// Options configures the front door.
type Options struct {
	// MaxTTL is the longest lifetime, and the lifetime when none is asked.
	MaxTTL time.Duration
	// MaxPerUser bounds the live tokens of one user (0: no bound).
	MaxPerUser int
	// APIAudiences are the tokens' audiences.
	APIAudiences []string
}

// REST is the tokens resource.
type REST struct {
	minter  Minter
	records Records
	authz   authorizer.Authorizer
	opts    Options
	clock   clock.PassiveClock
	rand    io.Reader
	events  *fanout.Broadcaster[watch.Event]
	seq     sequence
}

var (
	_ rest.Creater              = (*REST)(nil)
	_ rest.Getter               = (*REST)(nil)
	_ rest.Lister               = (*REST)(nil)
	_ rest.Watcher              = (*REST)(nil)
	_ rest.Updater              = (*REST)(nil)
	_ rest.GracefulDeleter      = (*REST)(nil)
	_ rest.CollectionDeleter    = (*REST)(nil)
	_ rest.Scoper               = (*REST)(nil)
	_ rest.SingularNameProvider = (*REST)(nil)
	_ rest.TableConvertor       = (*REST)(nil)
)

// New returns the resource. authz decides who is an admin (allowed the verb
// on every resource); clk and random are the injected time and randomness.
func New(minter Minter, records Records, authz authorizer.Authorizer, opts Options, clk clock.PassiveClock, random io.Reader) *REST {
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = DefaultMaxTTL
	}
	return &REST{minter: minter, records: records, authz: authz, opts: opts, clock: clk, rand: random,
		events: fanout.New[watch.Event](watchBuffer)}
}

// New implements rest.Storage.
func (r *REST) New() runtime.Object { return &extv1.Token{} }

// NewList implements rest.Lister.
func (r *REST) NewList() runtime.Object { return &extv1.TokenList{} }

// Destroy implements rest.Storage.
func (r *REST) Destroy() { r.events.Close() }

// NamespaceScoped implements rest.Scoper.
func (r *REST) NamespaceScoped() bool { return false }

// GetSingularName implements rest.SingularNameProvider.
func (r *REST) GetSingularName() string { return "token" }

// caller is who makes the request and whether they are an admin for verb.
type caller struct {
	user  user.Info
	admin bool
}

func (r *REST) caller(ctx context.Context, verb string) (caller, error) {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return caller{}, apierrors.NewUnauthorized("no user")
	}
	decision, _, err := r.authz.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: verb, APIGroup: "*", Resource: "*", ResourceRequest: true,
	})
	if err != nil && decision != authorizer.DecisionAllow {
		return caller{user: u}, nil
	}
	return caller{user: u, admin: decision == authorizer.DecisionAllow}, nil
}

// owns reports whether c may see rec: admins all, users their own.
func (c caller) owns(rec *store.Record) bool {
	return c.admin || rec.Subject == c.user.GetName()
}

// tokenOwner reports whether u may own tokens: a named user, not anonymous,
// not a system identity such as system:admin or a service account.
func tokenOwner(u user.Info) bool {
	name := u.GetName()
	return name != "" && name != user.Anonymous && !slices.Contains([]rune(name), ':')
}

// Create implements rest.Creater.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	in, ok := obj.(*extv1.Token)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("not a Token: %T", obj))
	}
	c, err := r.caller(ctx, "create")
	if err != nil {
		return nil, err
	}
	owner := c.user.GetName()
	if !tokenOwner(c.user) {
		return nil, apierrors.NewForbidden(resource, "", fmt.Errorf("user %s is not a Portcullis user", owner))
	}
	if in.Spec.UserID != "" && in.Spec.UserID != owner {
		return nil, apierrors.NewForbidden(resource, "", fmt.Errorf("user %s may not create a token for user %s", owner, in.Spec.UserID))
	}
	ttl := time.Duration(in.Spec.TTL) * time.Millisecond
	if in.Spec.TTL == 0 {
		ttl = r.opts.MaxTTL
	}
	if errs := append(r.validateTTL(in.Spec.TTL, ttl), validateObject(in)...); len(errs) > 0 {
		return nil, apierrors.NewInvalid(tokenKind, "", errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, in); err != nil {
			return nil, err
		}
	}
	if err := r.checkLimit(ctx, owner); err != nil {
		return nil, err
	}
	now := r.clock.Now()
	dryRun := slices.Contains(options.DryRun, metav1.DryRunAll)
	for range 5 {
		name, uid, err := r.newName()
		if err != nil {
			return nil, status.MintFailed(ctx, "failed to create token", err)
		}
		ut := &store.UserToken{
			Name: name, UID: uid, Description: in.Spec.Description, TokenKind: in.Spec.Kind, TTL: ttl,
			Disabled: in.Spec.Enabled != nil && !*in.Spec.Enabled, LastUpdated: now, Generation: 1,
			Labels: in.Labels, Annotations: in.Annotations,
		}
		if dryRun {
			rec := &store.Record{Kind: store.KindUser, Subject: owner, IssuedAt: now, ExpiresAt: now.Add(ttl), User: ut}
			return r.toAPI(rec, c), nil
		}
		tok, err := r.minter.Mint(ctx, issuer.Request{
			Kind:           store.KindUser,
			Subject:        owner,
			UID:            c.user.GetUID(),
			Groups:         withoutAuthenticated(c.user.GetGroups()),
			Audiences:      r.opts.APIAudiences,
			Lifetime:       r.opts.MaxTTL,
			RecordLifetime: ttl,
			User:           ut,
			Name:           name,
			MaxHeld:        r.opts.MaxPerUser,
		})
		if errors.Is(err, store.ErrExists) {
			continue // a name taken by another token: draw again
		}
		if errors.Is(err, store.ErrLimit) {
			return nil, overLimit(owner, r.opts.MaxPerUser) // another create took the last place
		}
		if err != nil {
			return nil, status.MintFailed(ctx, "failed to create token", err)
		}
		out := r.toAPI(tok.Record, c)
		out.Status.Value, out.Status.BearerToken = tok.Value, tok.Value
		r.emit(watch.Added, tok.Record)
		return out, nil
	}
	return nil, apierrors.NewInternalError(errors.New("failed to create token: no free name after 5 tries"))
}

// validateObject checks what a user may write freely: labels and
// annotations as kube-apiserver validates them (syntax, 256 KiB of
// annotations in all) and the description's length.
func validateObject(in *extv1.Token) field.ErrorList {
	errs := metav1validation.ValidateLabels(in.Labels, field.NewPath("metadata", "labels"))
	errs = append(errs, apimachineryvalidation.ValidateAnnotations(in.Annotations, field.NewPath("metadata", "annotations"))...)
	if n := utf8.RuneCountInString(in.Spec.Description); n > MaxDescriptionLength {
		errs = append(errs, field.TooLong(field.NewPath("spec", "description"), n, MaxDescriptionLength))
	}
	return errs
}

func (r *REST) validateTTL(asked int64, ttl time.Duration) field.ErrorList {
	if asked < 0 || ttl > r.opts.MaxTTL {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "ttl"), asked,
			fmt.Sprintf("must be greater than 0 and at most %d (the maximum, %s), in milliseconds; leave it unset for the maximum",
				r.opts.MaxTTL.Milliseconds(), humanTTL(r.opts.MaxTTL)))}
	}
	return nil
}

// checkLimit refuses a new token when the store holds MaxPerUser tokens of
// the owner. The owner's expired tokens are purged first: they would stay
// until the periodic purge, and counting only live ones would let a user
// cut ttls to 1 ms and fill the store past the limit. This early count
// answers dry runs and most creates; the store's own count (MaxHeld), in
// the same atomic step as the write, is what holds under concurrent creates.
func (r *REST) checkLimit(ctx context.Context, owner string) error {
	if r.opts.MaxPerUser <= 0 {
		return nil
	}
	// The owner's own index range: the cost is their tokens, not the store's.
	list, err := r.records.ListRecords(ctx, store.ListOptions{Subject: owner, Kind: store.KindUser})
	if err != nil {
		return status.Unavailable(ctx, "failed to count the user's tokens", err)
	}
	now := r.clock.Now()
	held := 0
	for _, rec := range list.Items {
		if now.Before(rec.ExpiresAt) {
			held++
			continue
		}
		switch err := r.records.DeleteRecord(ctx, rec.JTI); {
		case err == nil:
			r.emit(watch.Deleted, rec)
		case errors.Is(err, store.ErrNotFound):
		default:
			return status.Unavailable(ctx, "failed to purge the user's expired tokens", err)
		}
	}
	if held >= r.opts.MaxPerUser {
		return overLimit(owner, held)
	}
	return nil
}

// overLimit is the answer to a create over the per-user limit.
func overLimit(owner string, held int) error {
	return apierrors.NewForbidden(resource, "", fmt.Errorf("user %s already has %d tokens, the most allowed: delete unused ones first", owner, held))
}

// withoutAuthenticated drops system:authenticated, which kube-apiserver adds
// to every authenticated user anyway.
func withoutAuthenticated(groups []string) []string {
	return slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return g == user.AllAuthenticated })
}

// nameSuffixLength makes names unique in practice: 27^10 ≈ 2·10^14, so at
// 10 million tokens a new name collides about once in twenty million draws
// (and a collision is drawn again).
const nameSuffixLength = 10

func (r *REST) newName() (string, string, error) {
	suffix, err := names.Suffix(r.rand, nameSuffixLength)
	if err != nil {
		return "", "", err
	}
	uid, err := names.UID(r.rand)
	if err != nil {
		return "", "", err
	}
	return "token-" + suffix, uid, nil
}
