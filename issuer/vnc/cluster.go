package vnc

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// VirtualMachineGVR is KubeVirt's VirtualMachine resource.
var VirtualMachineGVR = schema.GroupVersionResource{Group: "kubevirt.io", Version: "v1", Resource: "virtualmachines"}

// ManagedByLabel marks the objects Portcullis creates for VNC access.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// Cluster is what cluster-connected mode does for a VNC token: check that
// the VM exists and give it its access objects, as vm-console-proxy does.
type Cluster interface {
	// EnsureVMAccess returns the uid of the VM's <vm>-vnc-access
	// ServiceAccount, creating it, its Role and RoleBinding (owned by the VM)
	// when missing. A missing VM is an apierrors NotFound.
	EnsureVMAccess(ctx context.Context, namespace, vm string) (string, error)
}

// KubeCluster is Cluster on a kube-apiserver.
type KubeCluster struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
}

var _ Cluster = KubeCluster{}

// EnsureVMAccess implements Cluster.
func (k KubeCluster) EnsureVMAccess(ctx context.Context, ns, vm string) (string, error) {
	obj, err := k.Dynamic.Resource(VirtualMachineGVR).Namespace(ns).Get(ctx, vm, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	name := ServiceAccountName(vm)
	meta := metav1.ObjectMeta{
		Name: name, Namespace: ns,
		Labels: map[string]string{ManagedByLabel: "portcullis", "app.kubernetes.io/component": "vnc-access"},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: vm, UID: obj.GetUID(),
		}},
	}
	sa, err := k.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: meta}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		sa, err = k.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return "", fmt.Errorf("failed to create service account: %w", err)
	}
	_, err = k.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"subresources.kubevirt.io"}, Resources: []string{"virtualmachineinstances/vnc"},
		ResourceNames: []string{vm}, Verbs: []string{"get"},
	}}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("failed to create role: %w", err)
	}
	_, err = k.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("failed to create role binding: %w", err)
	}
	return string(sa.UID), nil
}
