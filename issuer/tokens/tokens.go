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
	"strconv"
	"time"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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
	"portcullis.dev/portcullis/token"
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
	ListRecords(ctx context.Context, opts store.ListOptions) ([]*store.Record, error)
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
			return nil, status.Internal(ctx, "failed to create token", err)
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
		})
		if errors.Is(err, store.ErrExists) {
			continue // a name taken by another token: draw again
		}
		if err != nil {
			return nil, status.Internal(ctx, "failed to create token", err)
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
// cut ttls to 1 ms and fill the store past the limit.
func (r *REST) checkLimit(ctx context.Context, owner string) error {
	if r.opts.MaxPerUser <= 0 {
		return nil
	}
	recs, err := r.records.ListRecords(ctx, store.ListOptions{Subject: owner, Kind: store.KindUser})
	if err != nil {
		return status.Unavailable(ctx, "failed to count the user's tokens", err)
	}
	now := r.clock.Now()
	held := 0
	for _, rec := range recs {
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
		return apierrors.NewForbidden(resource, "", fmt.Errorf("user %s already has %d tokens, the most allowed: delete unused ones first", owner, held))
	}
	return nil
}

// withoutAuthenticated drops system:authenticated, which kube-apiserver adds
// to every authenticated user anyway.
func withoutAuthenticated(groups []string) []string {
	return slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return g == user.AllAuthenticated })
}

// get returns the record named name if c may see it, else NotFound: users
// cannot learn whether other users' tokens exist.
func (r *REST) get(ctx context.Context, c caller, name string) (*store.Record, error) {
	rec, err := r.records.GetRecordByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !c.owns(rec)) {
		return nil, apierrors.NewNotFound(resource, name)
	}
	if err != nil {
		return nil, status.Unavailable(ctx, "failed to read token "+name, err)
	}
	return rec, nil
}

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	c, err := r.caller(ctx, "get")
	if err != nil {
		return nil, err
	}
	rec, err := r.get(ctx, c, name)
	if err != nil {
		return nil, err
	}
	return r.toAPI(rec, c), nil
}

// list returns the tokens c may see that match the options' selectors.
func (r *REST) list(ctx context.Context, c caller, options *metainternalversion.ListOptions) ([]*store.Record, error) {
	opts := store.ListOptions{Kind: store.KindUser}
	if !c.admin {
		opts.Subject = c.user.GetName()
	}
	recs, err := r.records.ListRecords(ctx, opts)
	if err != nil {
		return nil, status.Unavailable(ctx, "failed to list tokens", err)
	}
	ls, fs := selectors(options)
	return slices.DeleteFunc(recs, func(rec *store.Record) bool { return !matches(rec, ls, fs) }), nil
}

func selectors(options *metainternalversion.ListOptions) (labels.Selector, fields.Selector) {
	ls, fs := labels.Everything(), fields.Everything()
	if options != nil && options.LabelSelector != nil {
		ls = options.LabelSelector
	}
	if options != nil && options.FieldSelector != nil {
		fs = options.FieldSelector
	}
	return ls, fs
}

func matches(rec *store.Record, ls labels.Selector, fs fields.Selector) bool {
	return ls.Matches(labels.Set(rec.User.Labels)) &&
		fs.Matches(fields.Set{"metadata.name": rec.User.Name, "spec.userID": rec.Subject})
}

// List implements rest.Lister.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	c, err := r.caller(ctx, "list")
	if err != nil {
		return nil, err
	}
	recs, err := r.list(ctx, c, options)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *store.Record) int { return a.IssuedAt.Compare(b.IssuedAt) })
	out := &extv1.TokenList{ListMeta: metav1.ListMeta{ResourceVersion: r.seq.current()}}
	for _, rec := range recs {
		out.Items = append(out.Items, *r.toAPI(rec, c))
	}
	return out, nil
}

// Update implements rest.Updater: only metadata labels and annotations,
// spec.description, spec.ttl and spec.enabled may change; users may only
// reduce the ttl, admins may extend it up to the maximum.
func (r *REST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	c, err := r.caller(ctx, "update")
	if err != nil {
		return nil, false, err
	}
	rec, err := r.get(ctx, c, name)
	if err != nil {
		return nil, false, err
	}
	old := r.toAPI(rec, c)
	obj, err := objInfo.UpdatedObject(ctx, old)
	if err != nil {
		return nil, false, err
	}
	in, ok := obj.(*extv1.Token)
	if !ok {
		return nil, false, apierrors.NewBadRequest(fmt.Sprintf("not a Token: %T", obj))
	}
	if in.ResourceVersion != "" && in.ResourceVersion != old.ResourceVersion {
		return nil, false, apierrors.NewConflict(resource, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	errs := immutable(in, old)
	ttl := time.Duration(in.Spec.TTL) * time.Millisecond
	if in.Spec.TTL == 0 {
		ttl = r.opts.MaxTTL
	}
	errs = append(errs, r.validateTTL(in.Spec.TTL, ttl)...)
	errs = append(errs, validateObject(in)...)
	if len(errs) > 0 {
		return nil, false, apierrors.NewInvalid(tokenKind, name, errs)
	}
	if ttl > rec.User.TTL && !c.admin {
		return nil, false, apierrors.NewForbidden(resource, name, fmt.Errorf("user %s may only reduce spec.ttl; extending it takes an admin", c.user.GetName()))
	}
	disabled := in.Spec.Enabled != nil && !*in.Spec.Enabled
	if err := c.mayEnable(rec, disabled, name); err != nil {
		return nil, false, err
	}
	if updateValidation != nil {
		if err := updateValidation(ctx, in, old); err != nil {
			return nil, false, err
		}
	}
	apply := func(rec *store.Record) error {
		if strconv.FormatInt(rec.User.Generation, 10) != old.ResourceVersion {
			return apierrors.NewConflict(resource, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
		if err := c.mayEnable(rec, disabled, name); err != nil {
			return err
		}
		switch {
		case disabled && !rec.User.Disabled:
			rec.User.DisabledBy, rec.User.DisabledByAdmin = c.user.GetName(), c.admin
		case !disabled:
			rec.User.DisabledBy, rec.User.DisabledByAdmin = "", false
		}
		rec.User.Description = in.Spec.Description
		rec.User.Disabled = disabled
		rec.User.TTL = ttl
		rec.User.Labels, rec.User.Annotations = in.Labels, in.Annotations
		rec.User.LastUpdated = r.clock.Now()
		rec.User.Generation++
		rec.ExpiresAt = rec.IssuedAt.Add(ttl)
		return nil
	}
	if slices.Contains(options.DryRun, metav1.DryRunAll) {
		preview := *rec
		u := *rec.User
		preview.User = &u
		if err := apply(&preview); err != nil {
			return nil, false, err
		}
		return r.toAPI(&preview, c), false, nil
	}
	updated, err := r.records.UpdateRecord(ctx, rec.JTI, apply)
	var apiStatus apierrors.APIStatus
	switch {
	case errors.As(err, &apiStatus):
		return nil, false, err
	case errors.Is(err, store.ErrNotFound):
		return nil, false, apierrors.NewNotFound(resource, name)
	case err != nil:
		return nil, false, status.Unavailable(ctx, "failed to update token "+name, err)
	}
	r.emit(watch.Modified, updated)
	return r.toAPI(updated, c), false, nil
}

// mayEnable refuses to enable a token an admin disabled unless c is an
// admin too: an admin's decision sticks.
func (c caller) mayEnable(rec *store.Record, disabled bool, name string) error {
	if disabled || !rec.User.Disabled || !rec.User.DisabledByAdmin || c.admin {
		return nil
	}
	return apierrors.NewForbidden(resource, name, fmt.Errorf("the token was disabled by an admin (%s); only an admin may enable it", rec.User.DisabledBy))
}

// immutable names every field of in that differs from old and may not change.
func immutable(in, old *extv1.Token) field.ErrorList {
	var errs field.ErrorList
	check := func(path *field.Path, got, want string) {
		if got != want {
			errs = append(errs, field.Invalid(path, got, "field is immutable"))
		}
	}
	check(field.NewPath("metadata", "name"), in.Name, old.Name)
	check(field.NewPath("metadata", "uid"), string(in.UID), string(old.UID))
	check(field.NewPath("spec", "userID"), in.Spec.UserID, old.Spec.UserID)
	check(field.NewPath("spec", "kind"), in.Spec.Kind, old.Spec.Kind)
	return errs
}

// Delete implements rest.GracefulDeleter.
func (r *REST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	c, err := r.caller(ctx, "delete")
	if err != nil {
		return nil, false, err
	}
	rec, err := r.get(ctx, c, name)
	if err != nil {
		return nil, false, err
	}
	return r.delete(ctx, c, rec, deleteValidation, options)
}

func (r *REST) delete(ctx context.Context, c caller, rec *store.Record, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	obj := r.toAPI(rec, c)
	if options != nil && options.Preconditions != nil && options.Preconditions.UID != nil && *options.Preconditions.UID != obj.UID {
		return nil, false, apierrors.NewConflict(resource, obj.Name, fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", *options.Preconditions.UID, obj.UID))
	}
	if deleteValidation != nil {
		if err := deleteValidation(ctx, obj); err != nil {
			return nil, false, err
		}
	}
	if options != nil && slices.Contains(options.DryRun, metav1.DryRunAll) {
		return obj, true, nil
	}
	switch err := r.records.DeleteRecord(ctx, rec.JTI); {
	case errors.Is(err, store.ErrNotFound):
		return nil, false, apierrors.NewNotFound(resource, obj.Name)
	case err != nil:
		return nil, false, status.Unavailable(ctx, "failed to delete token "+obj.Name, err)
	}
	r.emit(watch.Deleted, rec)
	return obj, true, nil
}

// DeleteCollection implements rest.CollectionDeleter: the caller's own
// tokens (admins: everyone's) that match the selectors.
func (r *REST) DeleteCollection(ctx context.Context, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions, listOptions *metainternalversion.ListOptions) (runtime.Object, error) {
	c, err := r.caller(ctx, "deletecollection")
	if err != nil {
		return nil, err
	}
	recs, err := r.list(ctx, c, listOptions)
	if err != nil {
		return nil, err
	}
	out := &extv1.TokenList{}
	for _, rec := range recs {
		obj, _, err := r.delete(ctx, c, rec, deleteValidation, options)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, *obj.(*extv1.Token))
	}
	return out, nil
}

// toAPI renders a record as the caller sees it. The value is never part of
// it: only the create response carries it.
func (r *REST) toAPI(rec *store.Record, c caller) *extv1.Token {
	u := rec.User
	enabled := !u.Disabled
	out := &extv1.Token{
		TypeMeta: metav1.TypeMeta{APIVersion: extv1.SchemeGroupVersion.String(), Kind: "Token"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              u.Name,
			UID:               types.UID(u.UID),
			ResourceVersion:   strconv.FormatInt(u.Generation, 10),
			CreationTimestamp: metav1.NewTime(rec.IssuedAt),
			Labels:            u.Labels,
			Annotations:       u.Annotations,
		},
		Spec: extv1.TokenSpec{
			UserID:      rec.Subject,
			Kind:        u.TokenKind,
			Description: u.Description,
			TTL:         u.TTL.Milliseconds(),
			Enabled:     &enabled,
		},
		Status: extv1.TokenStatus{
			Expired:        !r.clock.Now().Before(rec.ExpiresAt),
			ExpiresAt:      rec.ExpiresAt.UTC().Format(time.RFC3339),
			LastUpdateTime: u.LastUpdated.UTC().Format(time.RFC3339),
		},
	}
	if u.LastUsedAt != nil {
		t := metav1.NewTime(*u.LastUsedAt)
		out.Status.LastUsedAt = &t
	}
	if c.user != nil && rec.JTI != "" {
		out.Status.Current = slices.Contains(c.user.GetExtra()[token.CredentialIDExtra], "JTI="+rec.JTI)
	}
	return out
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
