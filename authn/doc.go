// Package authn verifies Portcullis tokens (signature, then claims, then the
// store's exact state) and answers kube-apiserver's TokenReview webhook.
package authn
