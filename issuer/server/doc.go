// Package server assembles the issuer's Kubernetes-style API server on
// k8s.io/apiserver's generic server: discovery, Status errors, content
// negotiation, authentication and authorization come from it; the front
// doors are installed as REST storages.
package server
