// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:openapi-model-package=io.kubevirt.token.v1

// Package v1 holds the token.kubevirt.io/v1 types of KubeVirt's VNC token
// API, served by the issuer.
package v1
