package v1alpha1

// OpenAPI model names, in the form k8s.io/api uses, so the generated
// OpenAPI definitions and the scheme name each type the same way.

// OpenAPIModelName names Revocation in OpenAPI.
func (Revocation) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.Revocation" }

// OpenAPIModelName names RevocationList in OpenAPI.
func (RevocationList) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.RevocationList" }

// OpenAPIModelName names RevocationSpec in OpenAPI.
func (RevocationSpec) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.RevocationSpec" }

// OpenAPIModelName names RevocationStatus in OpenAPI.
func (RevocationStatus) OpenAPIModelName() string { return "dev.portcullis.v1alpha1.RevocationStatus" }
