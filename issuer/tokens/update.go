package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/registry/rest"

	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	"portcullis.dev/portcullis/issuer/status"
	"portcullis.dev/portcullis/store"
)

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
	recs, err := r.listAll(ctx, c, listOptions)
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
