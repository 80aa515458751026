package tokenrequest

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
)

// Cluster reads the objects a TokenRequest names, in cluster-connected
// mode, as kube-apiserver reads them from its own storage. A missing object
// is an apierrors NotFound.
type Cluster interface {
	ServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	Node(ctx context.Context, name string) (*corev1.Node, error)
	// Secret returns only the Secret's metadata: Portcullis never reads
	// secret data.
	Secret(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error)
}

// KubeCluster is Cluster on a kube-apiserver.
type KubeCluster struct {
	Client   kubernetes.Interface
	Metadata metadata.Interface
}

var _ Cluster = KubeCluster{}

// ServiceAccount implements Cluster.
func (k KubeCluster) ServiceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	return k.Client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
}

// Pod implements Cluster.
func (k KubeCluster) Pod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return k.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

// Node implements Cluster.
func (k KubeCluster) Node(ctx context.Context, name string) (*corev1.Node, error) {
	return k.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// SecretsGVR is the core Secret resource, read as metadata only.
var SecretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Secret implements Cluster.
func (k KubeCluster) Secret(ctx context.Context, ns, name string) (*metav1.PartialObjectMetadata, error) {
	return k.Metadata.Resource(SecretsGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
}
