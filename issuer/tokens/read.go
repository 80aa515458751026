package tokens

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
	"portcullis.dev/portcullis/token"
)

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

// list returns a page of the tokens c may see that match the options'
// selectors, and the continue token of the next page. It reads only the
// caller's own tokens (admins: every user token), a page at a time when
// the options set a limit (kubectl --chunk-size).
func (r *REST) list(ctx context.Context, c caller, options *metainternalversion.ListOptions) ([]*store.Record, string, error) {
	opts := store.ListOptions{Kind: store.KindUser}
	if !c.admin {
		opts.Subject = c.user.GetName()
	}
	if options != nil {
		opts.Limit, opts.Continue = options.Limit, options.Continue
	}
	list, err := r.records.ListRecords(ctx, opts)
	if errors.Is(err, store.ErrInvalidContinue) {
		return nil, "", apierrors.NewBadRequest("the continue token is not valid for this list: start again without it")
	}
	if err != nil {
		return nil, "", status.Unavailable(ctx, "failed to list tokens", err)
	}
	ls, fs := selectors(options)
	return slices.DeleteFunc(list.Items, func(rec *store.Record) bool { return !matches(rec, ls, fs) }), list.Continue, nil
}

// listAll is every page of list.
func (r *REST) listAll(ctx context.Context, c caller, options *metainternalversion.ListOptions) ([]*store.Record, error) {
	opts := metainternalversion.ListOptions{}
	if options != nil {
		opts = *options
	}
	var recs []*store.Record
	for {
		page, next, err := r.list(ctx, c, &opts)
		if err != nil {
			return nil, err
		}
		recs = append(recs, page...)
		if next == "" {
			return recs, nil
		}
		opts.Continue = next
	}
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
	recs, next, err := r.list(ctx, c, options)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *store.Record) int { return a.IssuedAt.Compare(b.IssuedAt) })
	out := &extv1.TokenList{ListMeta: metav1.ListMeta{ResourceVersion: r.seq.current(), Continue: next}}
	for _, rec := range recs {
		out.Items = append(out.Items, *r.toAPI(rec, c))
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
