package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the VNC token API's group.
const GroupName = "token.kubevirt.io"

// SchemeGroupVersion is the group and version of these types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1"}

// TokenResponse is the answer of GET …/virtualmachines/{name}/vnc, as
// KubeVirt's vm-console-proxy gives it: the token and when it expires.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TokenResponse struct {
	metav1.TypeMeta `json:",inline"`

	// Token is the bearer token for the VM's VNC console.
	Token string `json:"token"`
	// ExpirationTimestamp is when the token expires.
	ExpirationTimestamp metav1.Time `json:"expirationTimestamp"`
}

// AddToScheme registers the types under v1 and, as the same Go types, as
// the internal version.
func AddToScheme(s *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, {Group: GroupName, Version: runtime.APIVersionInternal}} {
		s.AddKnownTypes(gv, &TokenResponse{})
	}
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
