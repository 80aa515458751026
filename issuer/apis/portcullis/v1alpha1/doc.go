// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:openapi-model-package=dev.portcullis.v1alpha1

// Package v1alpha1 holds the portcullis.dev/v1alpha1 API types served by the
// issuer: Revocation and SigningKey.
package v1alpha1
