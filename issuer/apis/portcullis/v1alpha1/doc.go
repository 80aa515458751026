// +k8s:openapi-gen=true

// Package v1alpha1 holds the portcullis.dev/v1alpha1 API types served by the
// issuer: Revocation and SigningKey.
package v1alpha1
