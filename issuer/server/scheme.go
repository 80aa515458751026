package server

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
	kubevirtv1 "portcullis.dev/portcullis/issuer/apis/kubevirt/v1"
	portcullisv1alpha1 "portcullis.dev/portcullis/issuer/apis/portcullis/v1alpha1"
)

// newScheme registers every type the issuer serves. The external types are
// also registered as their own internal version: the issuer keeps no other
// representation, so the generic server never converts.
func newScheme() (*runtime.Scheme, serializer.CodecFactory, error) {
	s := runtime.NewScheme()
	core := corev1.SchemeGroupVersion
	authn := authenticationv1.SchemeGroupVersion
	for _, gv := range []schema.GroupVersion{core, {Group: core.Group, Version: runtime.APIVersionInternal}} {
		s.AddKnownTypes(gv, &corev1.ServiceAccount{})
	}
	for _, gv := range []schema.GroupVersion{authn, {Group: authn.Group, Version: runtime.APIVersionInternal}} {
		s.AddKnownTypes(gv, &authenticationv1.TokenRequest{})
	}
	metav1.AddToGroupVersion(s, core)
	metav1.AddToGroupVersion(s, authn)
	if err := kubevirtv1.AddToScheme(s); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	if err := extv1.AddToScheme(s); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	if err := portcullisv1alpha1.AddToScheme(s); err != nil {
		return nil, serializer.CodecFactory{}, err
	}
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	s.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	return s, serializer.NewCodecFactory(s), nil
}
