package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenClaim uses up a single-use token: a VNC proxy creates one before it
// opens a console session with such a token. Only the first claim of a
// token succeeds; every later one, at any proxy or Portcullis replica, is
// refused with 409 AlreadyExists. Like a TokenReview, the object is not
// stored: the issuer records the token's jti until the token expires, and
// never the token.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TokenClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TokenClaimSpec   `json:"spec"`
	Status TokenClaimStatus `json:"status,omitempty"`
}

// TokenClaimSpec holds the token to claim.
type TokenClaimSpec struct {
	// Token is the single-use token. It is checked as a review would, and
	// not returned.
	Token string `json:"token"`
	// Audience is the audience the token must have (default: the VNC
	// audience).
	Audience string `json:"audience,omitempty"`
}

// TokenClaimStatus is what the issuer recorded.
type TokenClaimStatus struct {
	// JTI is the claimed token's id.
	JTI string `json:"jti,omitempty"`
	// ExpiresAt is when the token, and the record of its claim, expire.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
}
