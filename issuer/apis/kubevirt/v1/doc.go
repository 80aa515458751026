// +k8s:openapi-gen=true

// Package v1 holds the token.kubevirt.io/v1 types of KubeVirt's VNC token
// API, served by the issuer.
package v1
