package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is Portcullis' own API group.
const GroupName = "portcullis.dev"

// SchemeGroupVersion is the group and version of these types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Revocation revokes one token (spec.jti) or every token of a subject minted
// up to the revocation's creation (spec.subject). It is cluster-scoped.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Revocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RevocationSpec   `json:"spec"`
	Status RevocationStatus `json:"status,omitempty"`
}

// RevocationSpec names what to revoke: exactly one of JTI and Subject.
type RevocationSpec struct {
	// JTI revokes the one token with this id.
	JTI string `json:"jti,omitempty"`
	// Subject revokes every token of this username minted until now, such as
	// system:serviceaccount:ns:name.
	Subject string `json:"subject,omitempty"`
	// Reason is kept for the audit trail.
	Reason string `json:"reason,omitempty"`
}

// RevocationStatus is filled in by the issuer.
type RevocationStatus struct {
	// RevokedBy is the user who created the revocation.
	RevokedBy string `json:"revokedBy,omitempty"`
	// ExpiresAt is when a jti revocation is dropped: its token is dead by then.
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// EffectiveAt is the exact time of a subject revocation: tokens of the
	// subject issued at or before it are refused. (creationTimestamp has
	// whole seconds only.)
	EffectiveAt *metav1.MicroTime `json:"effectiveAt,omitempty"`
}

// RevocationList is a list of Revocations.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type RevocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Revocation `json:"items"`
}

// AddToScheme registers the types under v1alpha1 and, as the same Go types,
// as the internal version: the issuer stores nothing in another version, so
// no conversion is needed.
func AddToScheme(s *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, {Group: GroupName, Version: runtime.APIVersionInternal}} {
		s.AddKnownTypes(gv, &Revocation{}, &RevocationList{}, &SigningKey{}, &SigningKeyList{}, &TokenClaim{})
	}
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
