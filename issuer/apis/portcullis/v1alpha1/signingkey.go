package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// SigningKey is one key of the signing key ring; its name is the key id
// (RFC 7638 thumbprint). Creating one rotates, setting spec.retired retires
// it, deleting one prunes it. Private parts never leave the issuer.
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
type SigningKeyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []SigningKey `json:"items"`
}

// DeepCopyInto copies k into out.
func (k *SigningKey) DeepCopyInto(out *SigningKey) {
	*out = *k
	k.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	for _, p := range []**metav1.Time{&out.Status.PromoteAt, &out.Status.DemotedAt, &out.Status.RetiredAt} {
		if *p != nil {
			*p = (*p).DeepCopy()
		}
	}
}

// DeepCopy returns a copy of k.
func (k *SigningKey) DeepCopy() *SigningKey {
	if k == nil {
		return nil
	}
	out := new(SigningKey)
	k.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (k *SigningKey) DeepCopyObject() runtime.Object { return k.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *SigningKeyList) DeepCopyInto(out *SigningKeyList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]SigningKey, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *SigningKeyList) DeepCopy() *SigningKeyList {
	if l == nil {
		return nil
	}
	out := new(SigningKeyList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *SigningKeyList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

// OpenAPIModelName names SigningKey in OpenAPI.
func (SigningKey) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.SigningKey" }

// OpenAPIModelName names SigningKeyList in OpenAPI.
func (SigningKeyList) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.SigningKeyList" }

// OpenAPIModelName names SigningKeySpec in OpenAPI.
func (SigningKeySpec) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.SigningKeySpec" }

// OpenAPIModelName names SigningKeyStatus in OpenAPI.
func (SigningKeyStatus) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.SigningKeyStatus" }
