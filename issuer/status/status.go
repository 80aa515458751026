// Package status turns the issuer's internal failures into the Status errors
// its APIs answer with: a generic message on the wire, the cause (store
// paths, etcd endpoints, library errors) only in the log. Clients learn
// what failed and whether to retry, never how the server is built.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"portcullis.dev/portcullis/keys"
)

// RetryAfterSeconds is what a 503 asks clients to wait before retrying.
const RetryAfterSeconds = 1

// Unavailable logs cause and returns a 503 saying only that what could not
// be done because the store did not answer, and to retry.
func Unavailable(ctx context.Context, what string, cause error) *apierrors.StatusError {
	klog.FromContext(ctx).Error(cause, "store did not answer", "operation", what)
	err := apierrors.NewServiceUnavailable(what + ": the token store cannot answer, retry later")
	err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: RetryAfterSeconds}
	return err
}

// KeyEncryptionUnavailable logs cause and returns a 503 saying that what
// could not be done because the key-encryption provider (the KMS plugin)
// did not answer, and to retry.
func KeyEncryptionUnavailable(ctx context.Context, what string, cause error) *apierrors.StatusError {
	klog.FromContext(ctx).Error(cause, "key-encryption provider did not answer", "operation", what)
	err := apierrors.NewServiceUnavailable(what + ": the signing key is sealed and the key-encryption provider (KMS plugin) does not answer, retry later")
	err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: RetryAfterSeconds}
	return err
}

// NoSigningKey returns a 503 saying that no key signs and what to do.
func NoSigningKey(what string) *apierrors.StatusError {
	err := apierrors.NewServiceUnavailable(what + ": no signing key is active; an admin must rotate one in (`portcullis keys rotate --now`)")
	err.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: RetryAfterSeconds}
	return err
}

// MintFailed answers a failed mint: 503 when no key can sign (none is
// active, or its private key is sealed and the KMS plugin does not
// answer), 500 otherwise.
func MintFailed(ctx context.Context, what string, cause error) *apierrors.StatusError {
	switch {
	case errors.Is(cause, keys.ErrNoActiveKey):
		klog.FromContext(ctx).Error(cause, "no signing key", "operation", what)
		return NoSigningKey(what)
	case errors.Is(cause, keys.ErrSealed):
		return KeyEncryptionUnavailable(ctx, what, cause)
	}
	return Internal(ctx, what, cause)
}

// Internal logs cause and returns a 500 saying only that what failed.
func Internal(ctx context.Context, what string, cause error) *apierrors.StatusError {
	klog.FromContext(ctx).Error(cause, "internal error", "operation", what)
	return apierrors.NewInternalError(errors.New(what))
}

// New returns a failure Status with a message of the handler's own.
func New(code int, reason metav1.StatusReason, msg string) *apierrors.StatusError {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: msg}}
}

// Write writes err as a Kubernetes Status, for handlers outside the generic
// server's REST machinery (the VNC connect handler).
func Write(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(st.Details.RetryAfterSeconds)))
	}
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}
