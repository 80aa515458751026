// +k8s:openapi-gen=true

// Package v1 holds the ext.cattle.io/v1 Token type, as Rancher's user Token
// API defines it, served by the issuer.
package v1
