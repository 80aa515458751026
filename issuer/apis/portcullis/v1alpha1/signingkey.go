package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SigningKey is one key of the signing key ring; its name is the key id
// (RFC 7638 thumbprint). Creating one rotates, setting spec.retired retires
// it, deleting one prunes it. Private parts never leave the issuer.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SigningKey struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SigningKeySpec   `json:"spec,omitempty"`
	Status SigningKeyStatus `json:"status,omitempty"`
}

// SigningKeySpec is what an admin asks of a key.
type SigningKeySpec struct {
	// Algorithm is ES256 (default), EdDSA or RS256. Set at creation only.
	Algorithm string `json:"algorithm,omitempty"`
	// Immediate, at creation, makes the key sign at once instead of after
	// the propagation delay (after a compromise).
	Immediate bool `json:"immediate,omitempty"`
	// Retired refuses every token the key signed, at once. It cannot be undone.
	Retired bool `json:"retired,omitempty"`
}

// SigningKeyStatus is where the key stands.
type SigningKeyStatus struct {
	// State is next, active, verifying or retired.
	State string `json:"state"`
	// PromoteAt is when a next key starts signing.
	PromoteAt *metav1.Time `json:"promoteAt,omitempty"`
	// DemotedAt is when the key stopped signing.
	DemotedAt *metav1.Time `json:"demotedAt,omitempty"`
	// RetiredAt is when the key was retired.
	RetiredAt *metav1.Time `json:"retiredAt,omitempty"`
}

// SigningKeyList is a list of SigningKeys.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SigningKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []SigningKey `json:"items"`
}
