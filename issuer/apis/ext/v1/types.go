package v1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the user Token API's group.
const GroupName = "ext.cattle.io"

// SchemeGroupVersion is the group and version of these types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1"}

// Token is a user's own API token. It is cluster-scoped; users see only
// their own.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Token struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   TokenSpec   `json:"spec,omitempty"`
	Status TokenStatus `json:"status,omitempty"`
}

// TokenSpec is what the owner asks for.
type TokenSpec struct {
	// UserID is the owner; it defaults to, and must equal, the caller.
	UserID string `json:"userID,omitempty"`
	// Kind is "session" for a login token; anything else is a derived token.
	Kind string `json:"kind"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// TTL is the lifetime in milliseconds; unset means the configured maximum.
	TTL int64 `json:"ttl"`
	// Enabled false stops the token at once; unset means enabled.
	Enabled *bool `json:"enabled,omitempty"`
}

// TokenStatus is filled in by the issuer.
type TokenStatus struct {
	// Value is the token. It is returned once, in the create response, and
	// never stored.
	Value string `json:"value,omitempty"`
	// BearerToken is what to send as "Authorization: Bearer"; in the create
	// response only. For Portcullis it equals Value.
	BearerToken string `json:"bearerToken,omitempty"`
	// Current is true when this token authenticated the request.
	Current bool `json:"current"`
	// Expired is true once the TTL has passed.
	Expired bool `json:"expired"`
	// ExpiresAt is creation time plus TTL, RFC 3339.
	ExpiresAt string `json:"expiresAt"`
	// LastUpdateTime is when the token was created or last edited, RFC 3339.
	LastUpdateTime string `json:"lastUpdateTime"`
	// LastUsedAt is when the token last authenticated (updated at most once a
	// minute).
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`
}

// TokenList is a list of Tokens.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type TokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Token `json:"items"`
}

// AddToScheme registers the types under v1 and, as the same Go types, as
// the internal version (the issuer keeps no other representation).
func AddToScheme(s *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{SchemeGroupVersion, {Group: GroupName, Version: runtime.APIVersionInternal}} {
		s.AddKnownTypes(gv, &Token{}, &TokenList{})
	}
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return s.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind("Token"), func(label, value string) (string, string, error) {
		switch label {
		case "metadata.name", "spec.userID":
			return label, value, nil
		}
		return "", "", fmt.Errorf("field label %q is not supported for Token: use metadata.name or spec.userID", label)
	})
}
