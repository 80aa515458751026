// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:openapi-model-package=io.cattle.ext.v1

// Package v1 holds the ext.cattle.io/v1 Token type, as Rancher's user Token
// API defines it, served by the issuer.
package v1
